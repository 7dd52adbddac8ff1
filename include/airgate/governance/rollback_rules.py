"""Who may confirm a rollback proposal: one rule chain (``confirm_refusal``) answers both "may this person confirm"
(the Models page, through the API) and the refusal ``rollbacks.confirm`` raises, so the two can never disagree.

Four eyes on every change of production: the confirmer is an approver who is neither the proposer, nor the spec's
owner, nor a trainer of the version now champion or of the version it would return to (the approval request's
``requested_by`` and the training run's identity record, ``airgate.core.run_identity``). The proposal must still be
pending and unexpired, and the champion must still be the one it was proposed against.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from airgate.core.champion import current_champion
from airgate.core.run_identity import load_identity
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import approval_requests, as_utc, rollback_confirmations, rollback_proposals
from airgate.governance.decisions import Refusal
from airgate.governance.requests import Actor, is_approver


@dataclass(frozen=True)
class ProposalSubject:
    """What the confirm rules read from one proposal, loaded the same way for the page and for ``confirm``.

    ``status`` is the stored one (a pending proposal past its expiry is still ``pending`` here, so the rules answer
    "expired"); ``champion`` is the ledger's champion now; ``trainers`` who trained either version."""

    id: str
    model: str
    from_version: str | None
    to_version: str
    approval_id: str
    proposed_by: str
    justification: str
    quorum: int
    status: str
    created_at: datetime
    expires_at: datetime
    champion: str | None
    owner: str
    trainers: frozenset[str]
    confirmers: tuple[str, ...]

    def excluded(self) -> list[str]:
        """Everyone who may never confirm this proposal (separation of duties), sorted."""
        return sorted({self.proposed_by, self.owner, *self.trainers})

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "approval_id": self.approval_id,
            "proposed_by": self.proposed_by,
            "justification": self.justification,
            "quorum": self.quorum,
            "status": self.status,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "confirmed_by": list(self.confirmers),
            "excluded": self.excluded(),
        }


def trainers_of(conn: Connection, model: str, versions: Iterable[str | None]) -> frozenset[str]:
    """Who trained any of ``versions``: each approval request's ``requested_by`` and, where the training run has an
    identity record, its ``trained_by`` (who triggered it, else the owner)."""
    wanted = sorted({str(v) for v in versions if v is not None})
    if not wanted:
        return frozenset()
    rows = conn.execute(
        select(approval_requests.c.requested_by, approval_requests.c.training_run_id).where(
            approval_requests.c.model == model, approval_requests.c.model_version.in_(wanted)
        )
    ).all()
    names = {r.requested_by for r in rows}
    for r in rows:
        ident = load_identity(conn, r.training_run_id)
        if ident is not None:
            names.add(ident.trained_by)
    return frozenset(names)


def load_subject(conn: Connection, spec: ModelSpec, proposal_id: str) -> ProposalSubject | None:
    """The proposal with its confirmations, the champion now, and the trainers of both versions (or None)."""
    row = conn.execute(select(rollback_proposals).where(rollback_proposals.c.id == proposal_id)).first()
    if row is None:
        return None
    confirmers = conn.execute(
        select(rollback_confirmations.c.actor)
        .where(rollback_confirmations.c.proposal_id == proposal_id)
        .order_by(rollback_confirmations.c.id)
    ).scalars()
    champ = current_champion(conn, row.model)
    return ProposalSubject(
        id=row.id,
        model=row.model,
        from_version=row.from_version,
        to_version=str(row.to_version),
        approval_id=row.approval_id,
        proposed_by=row.proposed_by,
        justification=row.justification,
        quorum=int(row.quorum),
        status=row.status,
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at),
        champion=champ.version if champ else None,
        owner=spec.owner,
        trainers=trainers_of(conn, row.model, [row.from_version, row.to_version]),
        confirmers=tuple(confirmers),
    )


def _still_pending(s: ProposalSubject, actor: Actor, now: datetime) -> Refusal | None:
    if s.status == "pending":
        return None
    return Refusal("not_pending", 409, f"rollback proposal {s.id} is already {s.status}")


def _not_expired(s: ProposalSubject, actor: Actor, now: datetime) -> Refusal | None:
    if s.expires_at > now:
        return None
    return Refusal(
        "expired", 409, f"rollback proposal {s.id} expired at {s.expires_at.isoformat()}; propose again"
    )


def _champion_unchanged(s: ProposalSubject, actor: Actor, now: datetime) -> Refusal | None:
    if s.champion == s.from_version:
        return None

    def shown(v: str | None) -> str:
        return f"v{v}" if v is not None else "none"

    return Refusal(
        "champion_changed",
        409,
        f"the champion changed since this rollback was proposed (then {shown(s.from_version)}, now "
        f"{shown(s.champion)}); propose again",
    )


def _not_proposer(s: ProposalSubject, actor: Actor, now: datetime) -> Refusal | None:
    if actor.username != s.proposed_by:
        return None
    return Refusal(
        "separation_of_duties",
        403,
        f"user '{actor.username}' proposed this rollback; a different approver must confirm it (four eyes)",
    )


def _not_owner_or_trainer(s: ProposalSubject, actor: Actor, now: datetime) -> Refusal | None:
    who = actor.username
    if who == s.owner:
        why = f"owns {s.model}"
    elif who in s.trainers:
        versions = " or ".join(f"v{v}" for v in (s.from_version, s.to_version) if v is not None)
        why = f"trained {s.model} {versions}"
    else:
        return None
    return Refusal(
        "separation_of_duties",
        403,
        f"user '{who}' {why} and cannot confirm this rollback (separation of duties)",
    )


def _first_confirmation(s: ProposalSubject, actor: Actor, now: datetime) -> Refusal | None:
    if actor.username not in s.confirmers:
        return None
    return Refusal("already_confirmed", 409, f"user '{actor.username}' already confirmed this rollback")


CONFIRM_RULES = (
    _still_pending,
    _not_expired,
    _champion_unchanged,
    _not_proposer,
    _not_owner_or_trainer,
    _first_confirmation,
)


def confirm_refusal(
    spec: ModelSpec, proposal_id: str, subject: ProposalSubject | None, actor: Actor, now: datetime
) -> Refusal | None:
    """The one rule chain: the first rule that refuses ``actor`` confirming the proposal now, or None."""
    if not is_approver(spec, actor):
        return Refusal(
            "not_approver", 403, f"user '{actor.username}' is not an approver for model '{spec.name}'"
        )
    if subject is None or subject.model != spec.name:
        return Refusal("not_found", 404, f"rollback proposal {proposal_id} does not exist for {spec.name}")
    return next((r for r in (rule(subject, actor, now) for rule in CONFIRM_RULES) if r is not None), None)


def who_may_confirm(spec: ModelSpec, subject: ProposalSubject) -> dict[str, Any]:
    """The approvers the spec names minus everyone separation of duties excludes (any holder of an approver role
    may confirm too, unless excluded): what the propose answer and the page show."""
    excluded = subject.excluded()
    rules = spec.approval.approvers
    return {
        "users": [u for u in rules.users if u not in excluded],
        "roles": list(rules.roles),
        "excluded": excluded,
        "confirmations_needed": subject.quorum,
    }
