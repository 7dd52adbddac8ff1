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

from airgate.core import audit, ledger_rows
from airgate.core.champion import current_champion
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import (
    approval_decisions,
    approval_requests,
    lock_for_chain,
    utcnow,
)
from airgate.governance import bindings
from airgate.governance.decision_rules import (  # noqa: F401 - the rule chain, imported through this module
    REQUEST_RULES,
    Attempt,
    DecisionSubject,
    Refusal,
    decision_refusal,
    may_decide,
    why_not_decide,
)
from airgate.governance.requests import Actor, GovernanceError, _ledger_lock


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
    missing_roles: dict[str, int] | None = None  # per required role, approvers still needed

    def as_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "status": self.status,
            "model_version": self.model_version,
            "approvals": len(self.approvers),
            "quorum": self.quorum,
            "promoted_from": self.promoted_from,
            "missing_roles": dict(self.missing_roles or {}),
        }


def _check_input(decision: str, comment: str) -> None:
    if decision not in ("approve", "reject"):
        raise GovernanceError("bad_decision", 422, "decision must be 'approve' or 'reject'")
    if not comment or not comment.strip():
        raise GovernanceError("comment_required", 422, "a comment is required with every decision")


def _load_subject(conn: Connection, request_id: str) -> DecisionSubject | None:
    """The request under its lock (row-locked too on PostgreSQL), with everyone who already decided it and what
    it was bound to when it opened (read under the model's ledger lock, so the champion cannot move meanwhile)."""
    lock_for_chain(conn, f"airgate.approval.{request_id}")
    q = select(approval_requests).where(approval_requests.c.id == request_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    r = conn.execute(q).first()
    if r is None:
        return None
    lock_for_chain(conn, _ledger_lock(r.model))
    decided = conn.execute(
        select(approval_decisions.c.actor, approval_decisions.c.decision, approval_decisions.c.roles).where(
            approval_decisions.c.request_id == request_id
        )
    ).all()
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
        frozenset(d.actor for d in decided),
        bindings.load_facts(conn, dict(r._mapping)),
        tuple(tuple(d.roles or ()) for d in decided if d.decision == "approve"),
    )


def _record_vote(
    conn: Connection, subject: DecisionSubject, actor: Actor, decision: str, comment: str, now: datetime
) -> Outcome:
    """Write the decision (with the decider's roles) and its audit entry, then settle the request if it is now
    rejected, or approved by the head count and every required role."""
    roles = sorted(actor.roles)
    conn.execute(
        approval_decisions.insert().values(
            request_id=subject.id,
            actor=actor.username,
            decision=decision,
            comment=comment,
            evidence_hash=subject.evidence_hash,
            decided_at=now,
            roles=roles,
        )
    )
    audit.append(
        conn,
        actor=actor.username,
        event_type="decision",
        model=subject.model,
        entity={"approval_request_id": subject.id, "model_version": subject.model_version},
        details={
            "decision": decision,
            "comment": comment,
            "evidence_hash": subject.evidence_hash,
            "roles": roles,
        },
    )
    approver_roles = [list(r) for r in subject.approver_roles] + ([roles] if decision == "approve" else [])
    approvers = tuple(sorted(_approving(conn, subject.id)))  # the vote just written included
    missing = bindings.missing_roles(subject.facts.required_roles, approver_roles)
    quorate = len(approvers) >= subject.quorum and not missing
    status = "rejected" if decision == "reject" else "approved" if quorate else "pending"
    if status != "pending":
        conn.execute(
            update(approval_requests)
            .where(approval_requests.c.id == subject.id)
            .values(status=status, decided_at=now)
        )
    return Outcome(subject.id, status, subject.model_version, approvers, subject.quorum, None, missing)


def _approving(conn: Connection, request_id: str) -> set[str]:
    return set(
        conn.execute(
            select(approval_decisions.c.actor).where(
                approval_decisions.c.request_id == request_id, approval_decisions.c.decision == "approve"
            )
        ).scalars()
    )


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
    entry = ledger_rows.write_entry(
        conn,
        model=model,
        action="promote",
        from_version=promoted_from,
        to_version=outcome.model_version,
        approval_id=outcome.request_id,
        actor=actor.username,
        reason=comment,
        at=now,
    )
    audit.append(
        conn,
        actor=actor.username,
        event_type="promotion",
        model=model,
        entity={
            "approval_request_id": outcome.request_id,
            "model_version": outcome.model_version,
            "ledger_id": entry.id,
            "ledger_hash": entry.row_hash,
        },
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
