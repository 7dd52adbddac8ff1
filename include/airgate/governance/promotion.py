"""Approval requests, the rules that decide them, and the promotion ledger: the one name callers import.

The parts live beside it: ``requests`` (who may take part, opening and listing), ``decisions`` (the rule chain and
``decide``) and ``ledger`` (a rollback's effect, revocation, the champion as of a time, read-outs) and ``rollbacks`` (four eyes:
a rollback is proposed, then confirmed by other eligible approvers; ``rollback`` only proposes).

Every rule is enforced here, on the server side, and tested without a server: the plugin only translates HTTP into
these calls. No approval without an authenticated approver who is not the trainer or owner, an unexpired pending
request, the quorum, and unchanged evidence. An approval that reaches quorum writes the ledger entry and moves the
MLflow ``champion`` alias in one step: if the alias cannot move, the decision rolls back. Every attempt is audited,
refused ones included.
"""

from __future__ import annotations

from airgate.core.champion import Champion, current_champion
from airgate.governance.decisions import (
    REQUEST_RULES,
    AliasMover,
    Attempt,
    DecisionSubject,
    Outcome,
    Refusal,
    decide,
    decision_refusal,
    may_decide,
    why_not_decide,
)
from airgate.governance.ledger import (
    MIN_JUSTIFICATION,
    AliasRemover,
    approved_version,
    champion_as_of,
    ledger,
    model_versions,
    models_overview,
    revoke,
)
from airgate.governance.requests import (
    Actor,
    GovernanceError,
    get_request,
    is_approver,
    list_requests,
    may_break_glass,
    open_request,
    with_extra_approvers,
)
from airgate.governance.rollbacks import confirm as confirm_rollback
from airgate.governance.rollbacks import open_proposals as rollback_proposals
from airgate.governance.rollbacks import propose as propose_rollback
from airgate.governance.rollbacks import rollback

__all__ = [
    "Actor",
    "AliasMover",
    "AliasRemover",
    "Attempt",
    "Champion",
    "DecisionSubject",
    "GovernanceError",
    "MIN_JUSTIFICATION",
    "Outcome",
    "REQUEST_RULES",
    "Refusal",
    "approved_version",
    "confirm_rollback",
    "champion_as_of",
    "current_champion",
    "decide",
    "decision_refusal",
    "get_request",
    "is_approver",
    "ledger",
    "list_requests",
    "may_break_glass",
    "may_decide",
    "model_versions",
    "models_overview",
    "open_request",
    "propose_rollback",
    "revoke",
    "rollback",
    "rollback_proposals",
    "why_not_decide",
    "with_extra_approvers",
]
