"""The one rule chain that decides whether a person may decide an approval request now.

``decision_refusal`` answers both "may this person decide" (the page) and the refusal the server raises
(``decisions.decide``), so the two can never disagree. Besides the request row, the rules read what the request
was bound to when it opened (``bindings.Facts``): the hash in its ``approval_requested`` audit event and on the
candidate row, its report files' hashes, the champion it was gated against, and the run's identity record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airgate.core.hashing import canonical_sha256
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import as_utc, utcnow
from airgate.governance.bindings import Facts
from airgate.governance.requests import Actor, GovernanceError, is_approver


@dataclass(frozen=True)
class Refusal:
    """Why a decision is refused: the code, HTTP status and message the server answers with. The page shows the
    same value as the reason its buttons are missing, so the page and the server cannot disagree."""

    code: str
    status: int
    message: str

    def error(self) -> GovernanceError:
        return GovernanceError(self.code, self.status, self.message)


@dataclass(frozen=True)
class DecisionSubject:
    """What the decision rules read from one request, loaded the same way for the page and for ``decide``.

    ``status`` is the stored status: a pending request past its expiry is still ``pending`` here, so that the rules
    answer "expired" (and ``decide`` persists the expiry) rather than "not pending"."""

    id: str
    model: str
    model_version: str
    requested_by: str
    owner: str
    status: str
    expires_at: datetime | None
    evidence: Any
    evidence_hash: str
    quorum: int
    deciders: frozenset[str]
    facts: Facts = field(default_factory=Facts)
    approver_roles: tuple[tuple[str, ...], ...] = ()  # the roles of each approving decision so far

    @classmethod
    def from_request(cls, req: dict[str, Any]) -> DecisionSubject:
        """From ``get_request``'s answer, whose status shows a lapsed pending request as ``expired``: only an
        expiry that was persisted has a ``decided_at``, which gives the stored status back."""
        lapsed = req["status"] == "expired" and req.get("decided_at") is None
        decisions = req.get("decisions", [])
        return cls(
            req["id"],
            req["model"],
            str(req["model_version"]),
            req["requested_by"],
            req["owner"],
            "pending" if lapsed else req["status"],
            req["expires_at"],
            req["evidence"],
            req["evidence_hash"],
            req["quorum"],
            frozenset(d["actor"] for d in decisions),
            Facts.from_json(req.get("binding")),
            tuple(tuple(d.get("roles") or ()) for d in decisions if d["decision"] == "approve"),
        )


@dataclass(frozen=True)
class Attempt:
    """Who tries to decide, on which evidence (its hash, as they loaded it), and when."""

    actor: Actor
    evidence_hash: str
    now: datetime


def _separation_of_duties(subject: DecisionSubject, attempt: Attempt) -> Refusal | None:
    """Nobody who asked for, owns, triggered or owns the training run of this version may decide it."""
    who = attempt.actor.username
    if who not in {subject.requested_by, subject.owner, *subject.facts.run_people}:
        return None
    return Refusal(
        "separation_of_duties",
        403,
        f"user '{who}' trained or owns this model version and cannot "
        "approve or reject it (separation of duties)",
    )


def _still_pending(subject: DecisionSubject, attempt: Attempt) -> Refusal | None:
    if subject.status == "pending":
        return None
    if subject.status == "superseded" and subject.facts.superseded_by:
        return Refusal(
            "not_pending",
            409,
            f"request {subject.id} is already superseded by {subject.facts.superseded_by} (a newer version)",
        )
    return Refusal("not_pending", 409, f"request {subject.id} is already {subject.status}")


def _not_expired(subject: DecisionSubject, attempt: Attempt) -> Refusal | None:
    expires = as_utc(subject.expires_at)
    if expires is None or expires > attempt.now:
        return None
    return Refusal("expired", 409, f"request {subject.id} expired at {expires.isoformat()}")


def _same_evidence(subject: DecisionSubject, attempt: Attempt) -> Refusal | None:
    """The hash the approver saw, the stored bundle, the hash recorded when the request opened (its audit event)
    and the candidate row's hash must all agree: rewriting the bundle together with its stored hash is caught."""
    facts = subject.facts
    recorded = {subject.evidence_hash, canonical_sha256(subject.evidence), facts.opened_hash}
    if facts.candidate_hash is not None:
        recorded.add(facts.candidate_hash)
    if recorded == {attempt.evidence_hash}:
        return None
    if attempt.evidence_hash == subject.evidence_hash == canonical_sha256(subject.evidence):
        return Refusal(
            "evidence_changed",
            409,
            "the evidence no longer matches the hash recorded when the request opened (audit log and candidate "
            "row); it was rewritten and cannot be approved",
        )
    return Refusal(
        "evidence_changed",
        409,
        "the evidence changed since you loaded it; reload the request and review again",
    )


def _same_reports(subject: DecisionSubject, attempt: Attempt) -> Refusal | None:
    """Every report file hashed when the request opened must still hash the same."""
    changed = subject.facts.artifacts_changed
    if not changed:
        return None
    return Refusal(
        "evidence_changed",
        409,
        f"report file(s) {', '.join(changed)} changed since the request opened; they cannot be trusted",
    )


def _same_champion(subject: DecisionSubject, attempt: Attempt) -> Refusal | None:
    """The evidence compared the candidate with the champion of the day: if that changed, the gates are stale."""
    facts = subject.facts
    if not facts.champion_bound or facts.gated_champion == facts.champion_now:
        return None
    then = f"v{facts.gated_champion}" if facts.gated_champion else "no champion"
    now = f"v{facts.champion_now}" if facts.champion_now else "no champion"
    redo = f"against {now}" if facts.champion_now else "(there is no champion now)"
    return Refusal(
        "champion_changed",
        409,
        f"the champion changed from {then} to {now} since this request was gated; "
        f"re-run the train DAG to re-gate {redo}",
    )


def _first_vote(subject: DecisionSubject, attempt: Attempt) -> Refusal | None:
    if attempt.actor.username not in subject.deciders:
        return None
    return Refusal("already_decided", 409, f"user '{attempt.actor.username}' already decided this request")


REQUEST_RULES = (
    _separation_of_duties,
    _still_pending,
    _not_expired,
    _same_evidence,
    _same_reports,
    _same_champion,
    _first_vote,
)


def decision_refusal(
    spec: ModelSpec, request_id: str, subject: DecisionSubject | None, attempt: Attempt
) -> Refusal | None:
    """The one rule chain, in the order the server has always applied it: the first rule that refuses, or None."""
    if not is_approver(spec, attempt.actor):
        return Refusal(
            "not_approver", 403, f"user '{attempt.actor.username}' is not an approver for model '{spec.name}'"
        )
    if subject is None or subject.model != spec.name:
        return Refusal("not_found", 404, f"approval request {request_id} does not exist for {spec.name}")
    return next((r for r in (rule(subject, attempt) for rule in REQUEST_RULES) if r is not None), None)


def may_decide(
    spec: ModelSpec, request: dict[str, Any], actor: Actor, now: datetime | None = None
) -> Refusal | None:
    """Whether ``actor`` may decide ``request`` (as ``get_request`` returns it) now: None, or the very refusal
    ``decide`` would answer with. The page hides its buttons with it; ``decide`` still checks for itself."""
    attempt = Attempt(actor, request["evidence_hash"], now or utcnow())
    return decision_refusal(spec, request["id"], DecisionSubject.from_request(request), attempt)


def why_not_decide(
    spec: ModelSpec, request: dict[str, Any], actor: Actor, now: datetime | None = None
) -> str | None:
    """The message of ``may_decide``'s refusal, or None (kept for callers that only show the reason)."""
    refusal = may_decide(spec, request, actor, now)
    return refusal.message if refusal else None
