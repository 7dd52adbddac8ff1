"""Four-eyes rollback: one approver proposes (a version and a justification), other approvers confirm, and only
then does production change.

Why: a rollback changes what nightly scoring runs, like a promotion does, so it gets the same separation of duties.
Today's single call let one approver, even the model's owner, move production alone. Now ``propose`` records a
pending proposal that expires like an approval request (``approval.expires_after_hours``); ``confirm`` by an
eligible approver (``rollback_rules``: not the proposer, the owner, or a trainer of either version) records a
confirmation, and the ``approval.quorum``-th distinct one applies the rollback exactly as before (ledger row,
``rollback`` audit event, alias move, in one transaction). A proposal whose champion changed meanwhile is refused.
Every attempt is audited, refusals with their code; the spec's governance notifiers hear of each proposal and of
each rollback that took effect.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from airgate.core import audit
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import lock_for_chain, rollback_confirmations, rollback_proposals, utcnow
from airgate.governance import notices
from airgate.governance.decisions import AliasMover
from airgate.governance.ledger import _justified, apply_rollback, rollback_target
from airgate.governance.requests import Actor, GovernanceError, _ledger_lock, is_approver
from airgate.governance.rollback_rules import (
    ProposalSubject,
    confirm_refusal,
    load_subject,
    who_may_confirm,
)


def _insert_proposal(
    conn: Connection, spec: ModelSpec, actor: Actor, to_version: str, reason: str, now: datetime
) -> str:
    """The pending proposal and its ``rollback_proposed`` audit event (call under the ledger lock)."""
    target = rollback_target(conn, spec.name, to_version)
    pid = f"rbp-{uuid.uuid4().hex[:12]}"
    expires = now + timedelta(hours=spec.approval.expires_after_hours)
    conn.execute(
        rollback_proposals.insert().values(
            id=pid,
            model=spec.name,
            from_version=target.from_version,
            to_version=to_version,
            approval_id=target.approval_id,
            proposed_by=actor.username,
            justification=reason,
            quorum=spec.approval.quorum,
            status="pending",
            created_at=now,
            expires_at=expires,
        )
    )
    audit.append(
        conn,
        actor=actor.username,
        event_type="rollback_proposed",
        model=spec.name,
        entity={
            "rollback_proposal_id": pid,
            "model_version": to_version,
            "approval_request_id": target.approval_id,
        },
        details={
            "from_version": target.from_version,
            "to_version": to_version,
            "justification": reason,
            "quorum": spec.approval.quorum,
            "expires_at": expires.isoformat(),
        },
    )
    return pid


def propose(
    engine: Engine,
    spec: ModelSpec,
    actor: Actor,
    to_version: str,
    justification: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Propose making an earlier approved, never revoked version champion again. Approvers only (the owner too);
    nothing changes in production until the proposal is confirmed. Audited either way; returns the proposal with
    ``status: pending`` and who may confirm it."""
    now = now or utcnow()
    model = spec.name
    to_version = str(to_version)
    try:
        if not is_approver(spec, actor):
            raise GovernanceError("not_approver", 403, f"user '{actor.username}' may not roll back {model}")
        reason = _justified(justification, "rollback")
        with engine.begin() as conn:
            lock_for_chain(conn, _ledger_lock(model))
            pid = _insert_proposal(conn, spec, actor, to_version, reason, now)
            subject = load_subject(conn, spec, pid)
    except GovernanceError as err:
        _audit_refusal(engine, actor, model, {"model_version": to_version}, "propose", err)
        raise
    assert subject is not None
    answer = _answer(spec, subject)
    notices.notify(
        engine,
        spec,
        "rollback_proposed",
        f"{actor.username} proposed rolling {model} back from "
        f"{_shown(subject.from_version)} to v{to_version}; it needs {subject.quorum} confirmation(s) by "
        f"another approver. Justification: {reason}",
        {
            "version": to_version,
            "actor": actor.username,
            "rollback_proposal_id": pid,
            **answer["may_confirm"],
        },
    )
    return answer


def rollback(
    engine: Engine,
    spec: ModelSpec,
    actor: Actor,
    to_version: str,
    justification: str,
    move_alias: AliasMover | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The old single-call name, kept for callers: it only *proposes* now. ``move_alias`` is accepted and unused;
    the alias moves when the proposal is confirmed (``confirm``)."""
    return propose(engine, spec, actor, to_version, justification, now=now)


def _shown(version: str | None) -> str:
    return f"v{version}" if version is not None else "no champion"


def _answer(
    spec: ModelSpec, subject: ProposalSubject, effect: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The proposal as the API answers it: its state, who may confirm, and the rollback's effect once applied."""
    return {
        **subject.as_json(),
        "proposal_id": subject.id,
        "confirmations": len(subject.confirmers),
        "may_confirm": who_may_confirm(spec, subject),
        "ledger_id": effect["ledger_id"] if effect else None,
    }


def _audit_refusal(
    engine: Engine, actor: Actor, model: str, entity: dict[str, Any], stage: str, err: GovernanceError
) -> None:
    audit.record(
        engine,
        actor=actor.username,
        event_type="rollback_refused",
        model=model,
        entity=entity,
        details={"stage": stage, "code": err.code, "reason": err.message},
    )


def _close_stale(engine: Engine, model: str, proposal_id: str, code: str, now: datetime) -> None:
    """Persist what a refused confirmation found (its own transaction rolled back): a lapsed proposal is
    ``expired``, one whose champion changed is ``superseded``; either way no one can confirm it any more."""
    status = {"expired": "expired", "champion_changed": "superseded"}.get(code)
    if status is None:
        return
    with engine.begin() as conn:
        done = conn.execute(
            update(rollback_proposals)
            .where(rollback_proposals.c.id == proposal_id, rollback_proposals.c.status == "pending")
            .values(status=status, decided_at=now)
        ).rowcount
        if done:
            audit.append(
                conn,
                actor="airgate",
                event_type="rollback_proposal_closed",
                model=model,
                entity={"rollback_proposal_id": proposal_id},
                details={"status": status, "noticed_at": now.isoformat()},
            )


def _record_confirmation(
    conn: Connection, subject: ProposalSubject, actor: Actor, comment: str, now: datetime
) -> tuple[str, ...]:
    conn.execute(
        rollback_confirmations.insert().values(
            proposal_id=subject.id, actor=actor.username, comment=comment or None, confirmed_at=now
        )
    )
    confirmers = (*subject.confirmers, actor.username)
    audit.append(
        conn,
        actor=actor.username,
        event_type="rollback_confirmation",
        model=subject.model,
        entity={"rollback_proposal_id": subject.id, "model_version": subject.to_version},
        details={"comment": comment, "confirmations": len(confirmers), "quorum": subject.quorum},
    )
    return confirmers


def _apply_confirmation(
    engine: Engine,
    spec: ModelSpec,
    proposal_id: str,
    actor: Actor,
    comment: str,
    move_alias: AliasMover,
    now: datetime,
) -> tuple[ProposalSubject, dict[str, Any] | None]:
    """Check every rule under the ledger lock, record the confirmation, and on quorum apply the rollback, all in
    one transaction: if the alias cannot move, nothing commits."""
    with engine.begin() as conn:
        lock_for_chain(conn, _ledger_lock(spec.name))
        subject = load_subject(conn, spec, proposal_id)
        refusal = confirm_refusal(spec, proposal_id, subject, actor, now)
        if refusal is not None:
            raise refusal.error()
        assert subject is not None  # no proposal is a refusal (not_found)
        confirmers = _record_confirmation(conn, subject, actor, comment, now)
        effect = None
        if len(confirmers) >= subject.quorum:
            effect = apply_rollback(
                conn,
                spec.name,
                actor,
                subject.to_version,
                subject.justification,
                move_alias,
                now,
                {
                    "rollback_proposal_id": subject.id,
                    "proposed_by": subject.proposed_by,
                    "confirmed_by": list(confirmers),
                },
            )
            conn.execute(
                update(rollback_proposals)
                .where(rollback_proposals.c.id == subject.id)
                .values(status="confirmed", decided_at=now, ledger_id=effect["ledger_id"])
            )
        final = load_subject(conn, spec, proposal_id)
    assert final is not None
    return final, effect


def confirm(
    engine: Engine,
    spec: ModelSpec,
    proposal_id: str,
    actor: Actor,
    move_alias: AliasMover,
    comment: str = "",
    now: datetime | None = None,
) -> dict[str, Any]:
    """One eligible approver confirms a pending proposal; the quorum-th confirmation applies the rollback.
    Returns the proposal's state (``status: confirmed`` with ``ledger_id`` once applied). Refusals raise
    GovernanceError and are audited; an expiry or a changed champion found on the way closes the proposal."""
    now = now or utcnow()
    comment = (comment or "").strip()
    try:
        subject, effect = _apply_confirmation(engine, spec, proposal_id, actor, comment, move_alias, now)
    except GovernanceError as err:
        _close_stale(engine, spec.name, proposal_id, err.code, now)
        _audit_refusal(engine, actor, spec.name, {"rollback_proposal_id": proposal_id}, "confirm", err)
        raise
    if effect is not None:
        notices.notify(
            engine,
            spec,
            "rollback_confirmed",
            f"{spec.name} rolled back from {_shown(effect['from_version'])} to v{effect['to_version']}: proposed "
            f"by {subject.proposed_by}, confirmed by {', '.join(subject.confirmers)}. "
            f"Justification: {subject.justification}",
            {
                "version": subject.to_version,
                "actor": actor.username,
                "rollback_proposal_id": subject.id,
                **effect,
            },
        )
    return _answer(spec, subject, effect)


def open_proposals(
    engine: Engine, spec: ModelSpec, actor: Actor, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The model's pending proposals, newest first, each with whether ``actor`` may confirm it now and, if not,
    the very refusal ``confirm`` would answer with (the page shows it instead of the Confirm button)."""
    now = now or utcnow()
    out = []
    with engine.connect() as conn:
        ids = conn.execute(
            select(rollback_proposals.c.id)
            .where(rollback_proposals.c.model == spec.name, rollback_proposals.c.status == "pending")
            .order_by(rollback_proposals.c.created_at.desc(), rollback_proposals.c.id)
        ).scalars()
        for pid in list(ids):
            subject = load_subject(conn, spec, pid)
            assert subject is not None
            refusal = confirm_refusal(spec, pid, subject, actor, now)
            shown = "expired" if subject.expires_at <= now else subject.status
            out.append(
                {
                    **_answer(spec, subject),
                    "status": shown,
                    "can_confirm": refusal is None,
                    "cannot_confirm": refusal.message if refusal else None,
                    "cannot_confirm_code": refusal.code if refusal else None,
                }
            )
    return out
