"""Deciding an approval request: one rule chain (``decision_refusal``) answers both "may this person decide" (the
page) and the refusal the server raises (``decide``), so the two can never disagree. An approval that reaches
quorum writes the ledger entry and moves the MLflow ``champion`` alias in one step; every attempt is audited."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from airgate.core import audit
from airgate.core.champion import current_champion
from airgate.core.hashing import canonical_sha256
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import (
    approval_decisions,
    approval_requests,
    as_utc,
    lock_for_chain,
    promotion_ledger,
    utcnow,
)
from airgate.governance.requests import Actor, GovernanceError, _ledger_lock, is_approver


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

    @classmethod
    def from_request(cls, req: dict[str, Any]) -> DecisionSubject:
        """From ``get_request``'s answer, whose status shows a lapsed pending request as ``expired``: only an
        expiry that was persisted has a ``decided_at``, which gives the stored status back."""
        lapsed = req["status"] == "expired" and req.get("decided_at") is None
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
            frozenset(d["actor"] for d in req.get("decisions", [])),
        )


@dataclass(frozen=True)
class Attempt:
    """Who tries to decide, on which evidence (its hash, as they loaded it), and when."""

    actor: Actor
    evidence_hash: str
    now: datetime


def _separation_of_duties(subject: DecisionSubject, attempt: Attempt) -> Refusal | None:
    who = attempt.actor.username
    if who not in {subject.requested_by, subject.owner}:
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
    return Refusal("not_pending", 409, f"request {subject.id} is already {subject.status}")


def _not_expired(subject: DecisionSubject, attempt: Attempt) -> Refusal | None:
    expires = as_utc(subject.expires_at)
    if expires is None or expires > attempt.now:
        return None
    return Refusal("expired", 409, f"request {subject.id} expired at {expires.isoformat()}")


def _same_evidence(subject: DecisionSubject, attempt: Attempt) -> Refusal | None:
    """The hash the approver saw, and the stored bundle itself, must both still match the request's hash."""
    if attempt.evidence_hash == subject.evidence_hash == canonical_sha256(subject.evidence):
        return None
    return Refusal(
        "evidence_changed",
        409,
        "the evidence changed since you loaded it; reload the request and review again",
    )


def _first_vote(subject: DecisionSubject, attempt: Attempt) -> Refusal | None:
    if attempt.actor.username not in subject.deciders:
        return None
    return Refusal("already_decided", 409, f"user '{attempt.actor.username}' already decided this request")


REQUEST_RULES = (_separation_of_duties, _still_pending, _not_expired, _same_evidence, _first_vote)


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


def _refused(
    engine: Engine, model: str, request_id: str, decision: str, attempt: Attempt, err: GovernanceError
) -> GovernanceError:
    """Audit a refused decision (after its transaction rolled back); an expiry found on the way is persisted."""
    if err.code == "expired":
        _mark_expired(engine, model, request_id, attempt.now)
    audit.record(
        engine,
        actor=attempt.actor.username,
        event_type="decision_refused",
        model=model,
        entity={"approval_request_id": request_id},
        details={"decision": decision, "code": err.code, "reason": err.message},
    )
    return err


def _mark_expired(engine: Engine, model: str, request_id: str, now: datetime) -> None:
    """Persist the expiry found by a decision attempt (that attempt's own transaction was rolled back)."""
    with engine.begin() as conn:
        done = conn.execute(
            update(approval_requests)
            .where(approval_requests.c.id == request_id, approval_requests.c.status == "pending")
            .values(status="expired", decided_at=now)
        ).rowcount
        if done:
            audit.append(
                conn,
                actor="airgate",
                event_type="approval_expired",
                model=model,
                entity={"approval_request_id": request_id},
                details={"noticed_at": now.isoformat()},
            )


AliasMover = Callable[[str, str], None]  # (model, version) -> None; raises if the alias could not move


@dataclass(frozen=True)
class Outcome:
    """The request's state after one decision (the JSON ``decide`` answers with)."""

    request_id: str
    status: str
    model_version: str
    approvers: tuple[str, ...]
    quorum: int
    promoted_from: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "status": self.status,
            "model_version": self.model_version,
            "approvals": len(self.approvers),
            "quorum": self.quorum,
            "promoted_from": self.promoted_from,
        }


def _check_input(decision: str, comment: str) -> None:
    if decision not in ("approve", "reject"):
        raise GovernanceError("bad_decision", 422, "decision must be 'approve' or 'reject'")
    if not comment or not comment.strip():
        raise GovernanceError("comment_required", 422, "a comment is required with every decision")


def _load_subject(conn: Connection, request_id: str) -> DecisionSubject | None:
    """The request under its lock (row-locked too on PostgreSQL), with everyone who already decided it."""
    lock_for_chain(conn, f"airgate.approval.{request_id}")
    q = select(approval_requests).where(approval_requests.c.id == request_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    r = conn.execute(q).first()
    if r is None:
        return None
    deciders = conn.execute(
        select(approval_decisions.c.actor).where(approval_decisions.c.request_id == request_id)
    ).scalars()
    return DecisionSubject(
        r.id,
        r.model,
        str(r.model_version),
        r.requested_by,
        r.owner,
        r.status,
        r.expires_at,
        r.evidence,
        r.evidence_hash,
        r.quorum,
        frozenset(deciders),
    )


def _record_vote(
    conn: Connection, subject: DecisionSubject, actor: Actor, decision: str, comment: str, now: datetime
) -> Outcome:
    """Write the decision and its audit entry, then settle the request if it is now rejected or has quorum."""
    conn.execute(
        approval_decisions.insert().values(
            request_id=subject.id,
            actor=actor.username,
            decision=decision,
            comment=comment,
            evidence_hash=subject.evidence_hash,
            decided_at=now,
        )
    )
    audit.append(
        conn,
        actor=actor.username,
        event_type="decision",
        model=subject.model,
        entity={"approval_request_id": subject.id, "model_version": subject.model_version},
        details={"decision": decision, "comment": comment, "evidence_hash": subject.evidence_hash},
    )
    approvers = tuple(
        conn.execute(
            select(approval_decisions.c.actor).where(
                approval_decisions.c.request_id == subject.id, approval_decisions.c.decision == "approve"
            )
        ).scalars()
    )
    status = (
        "rejected" if decision == "reject" else "approved" if len(approvers) >= subject.quorum else "pending"
    )
    if status != "pending":
        conn.execute(
            update(approval_requests)
            .where(approval_requests.c.id == subject.id)
            .values(status=status, decided_at=now)
        )
    return Outcome(subject.id, status, subject.model_version, approvers, subject.quorum)


def _promote(
    conn: Connection,
    outcome: Outcome,
    model: str,
    actor: Actor,
    comment: str,
    now: datetime,
    move_alias: AliasMover,
) -> Outcome:
    """The ledger entry, its audit entry, then the alias: inside the transaction, so if the alias cannot move
    nothing commits."""
    lock_for_chain(conn, _ledger_lock(model))
    prev = current_champion(conn, model)
    promoted_from = prev.version if prev else None
    conn.execute(
        promotion_ledger.insert().values(
            model=model,
            action="promote",
            from_version=promoted_from,
            to_version=outcome.model_version,
            approval_id=outcome.request_id,
            actor=actor.username,
            reason=comment,
            at=now,
        )
    )
    audit.append(
        conn,
        actor=actor.username,
        event_type="promotion",
        model=model,
        entity={"approval_request_id": outcome.request_id, "model_version": outcome.model_version},
        details={
            "from_version": promoted_from,
            "to_version": outcome.model_version,
            "alias": "champion",
            "approvers": sorted(outcome.approvers),
        },
    )
    move_alias(model, outcome.model_version)
    return replace(outcome, promoted_from=promoted_from)


def _restore_alias(engine: Engine, model: str, restore_alias: AliasMover | None) -> None:
    """After a failed decision, point the alias back at the ledger's champion (the alias may have moved)."""
    if restore_alias is None:
        return
    champ = current_champion(engine, model)
    if champ is not None:
        restore_alias(model, champ.version)


def _apply_decision(
    engine: Engine,
    spec: ModelSpec,
    request_id: str,
    decision: str,
    comment: str,
    attempt: Attempt,
    move_alias: AliasMover,
) -> Outcome:
    """Check every rule under the request's lock, then record the vote and promote on quorum, in one transaction."""
    _check_input(decision, comment)
    with engine.begin() as conn:
        subject = _load_subject(conn, request_id)
        refusal = decision_refusal(spec, request_id, subject, attempt)
        if refusal is not None:
            raise refusal.error()
        assert subject is not None  # no request is a refusal (not_found)
        outcome = _record_vote(conn, subject, attempt.actor, decision, comment.strip(), attempt.now)
        if outcome.status == "approved":
            outcome = _promote(
                conn, outcome, spec.name, attempt.actor, comment.strip(), attempt.now, move_alias
            )
    return outcome


def decide(
    engine: Engine,
    spec: ModelSpec,
    request_id: str,
    actor: Actor,
    decision: str,
    comment: str,
    evidence_hash: str,
    move_alias: AliasMover,
    restore_alias: AliasMover | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record one approver's decision. Returns the request's resulting state. Raises GovernanceError if refused
    (audited); on any other failure nothing commits and the alias is pointed back at the ledger's champion."""
    attempt = Attempt(actor, evidence_hash, now or utcnow())
    try:
        return _apply_decision(engine, spec, request_id, decision, comment, attempt, move_alias).as_json()
    except GovernanceError as err:
        raise _refused(engine, spec.name, request_id, decision, attempt, err) from None
    except Exception:
        _restore_alias(engine, spec.name, restore_alias)
        raise
