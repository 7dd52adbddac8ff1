"""The promotion ledger after the decision: which versions are approved, rollback and break-glass revocation
(each with a justification), the champion as of a time, and the per-model read-outs the Models page shows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from airgate.core import audit
from airgate.core.champion import current_champion
from airgate.core.champion import last_ledger_entry as _last_ledger_entry
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import approval_requests, as_utc, lock_for_chain, promotion_ledger, utcnow
from airgate.governance.decisions import AliasMover
from airgate.governance.requests import (
    Actor,
    GovernanceError,
    _ledger_lock,
    _shown_status,
    is_approver,
    may_break_glass,
)


def approved_version(engine: Engine | Connection, model: str, version: str) -> str | None:
    """The approval id under which ``version`` is the ledger's current champion, or None."""
    champ = current_champion(engine, model)
    if champ is not None and champ.version == str(version):
        return champ.approval_id
    return None


def ledger(engine: Engine, model: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                select(promotion_ledger)
                .where(promotion_ledger.c.model == model)
                .order_by(promotion_ledger.c.id)
            ).mappings()
        ]


MIN_JUSTIFICATION = 10


def _justified(text: str, what: str) -> str:
    text = (text or "").strip()
    if len(text) < MIN_JUSTIFICATION:
        raise GovernanceError(
            "justification_required",
            422,
            f"a {what} needs a justification of at least {MIN_JUSTIFICATION} characters",
        )
    return text


def _revoked_versions(conn: Connection, model: str) -> set[str]:
    return {
        str(v)
        for v in conn.execute(
            select(promotion_ledger.c.from_version).where(
                promotion_ledger.c.model == model, promotion_ledger.c.action == "revoke"
            )
        ).scalars()
    }


def _ledger_entry(
    conn: Connection,
    model: str,
    action: str,
    from_version: str | None,
    to_version: str | None,
    approval_id: str | None,
    actor: Actor,
    reason: str,
    now: datetime,
) -> int:
    res = conn.execute(
        promotion_ledger.insert().values(
            model=model,
            action=action,
            from_version=from_version,
            to_version=to_version,
            approval_id=approval_id,
            actor=actor.username,
            reason=reason,
            at=now,
        )
    )
    key = res.inserted_primary_key
    assert key is not None
    return int(key[0])


def rollback(
    engine: Engine,
    spec: ModelSpec,
    actor: Actor,
    to_version: str,
    justification: str,
    move_alias: AliasMover,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Make an earlier approved (and never revoked) version the champion again. Approvers only; audited either way.

    The rolled-back-to version keeps its original approval id, so scoring and lineage show which approval it runs
    under, and the ledger row shows that it got there by a rollback.
    """
    now = now or utcnow()
    model = spec.name
    to_version = str(to_version)
    try:
        if not is_approver(spec, actor):
            raise GovernanceError("not_approver", 403, f"user '{actor.username}' may not roll back {model}")
        reason = _justified(justification, "rollback")
        with engine.begin() as conn:
            lock_for_chain(conn, _ledger_lock(model))
            req = conn.execute(
                select(approval_requests.c.id).where(
                    approval_requests.c.model == model,
                    approval_requests.c.model_version == to_version,
                    approval_requests.c.status == "approved",
                )
            ).first()
            if req is None:
                raise GovernanceError(
                    "not_approved",
                    409,
                    f"{model} v{to_version} was never approved: only an approved version can become champion",
                )
            if to_version in _revoked_versions(conn, model):
                raise GovernanceError("revoked", 409, f"{model} v{to_version} was revoked and cannot return")
            champ = current_champion(conn, model)
            if champ is not None and champ.version == to_version:
                raise GovernanceError(
                    "already_champion", 409, f"{model} v{to_version} is already the champion"
                )
            from_version = champ.version if champ else None
            ledger_id = _ledger_entry(
                conn, model, "rollback", from_version, to_version, req.id, actor, reason, now
            )
            audit.append(
                conn,
                actor=actor.username,
                event_type="rollback",
                model=model,
                entity={"model_version": to_version, "approval_request_id": req.id, "ledger_id": ledger_id},
                details={
                    "from_version": from_version,
                    "to_version": to_version,
                    "alias": "champion",
                    "justification": reason,
                },
            )
            move_alias(model, to_version)  # last, inside the transaction: if it raises, nothing commits
    except GovernanceError as err:
        audit.record(
            engine,
            actor=actor.username,
            event_type="rollback_refused",
            model=model,
            entity={"model_version": to_version},
            details={"code": err.code, "reason": err.message},
        )
        raise
    return {
        "model": model,
        "action": "rollback",
        "from_version": from_version,
        "to_version": to_version,
        "approval_id": req.id,
        "ledger_id": ledger_id,
    }


AliasRemover = Callable[[str], None]


def revoke(
    engine: Engine,
    spec: ModelSpec,
    actor: Actor,
    version: str,
    justification: str,
    remove_alias: AliasRemover,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Break-glass: withdraw the champion's approval now. Scoring refuses until a version is approved or rolled
    back to, and the revoked version can never return. Only the spec's break-glass users/roles; audited either way.
    """
    now = now or utcnow()
    model = spec.name
    version = str(version)
    try:
        if not may_break_glass(spec, actor):
            raise GovernanceError(
                "not_break_glass",
                403,
                f"user '{actor.username}' may not revoke {model} (break-glass is limited to "
                "approval.break_glass in the spec)",
            )
        reason = _justified(justification, "revocation")
        with engine.begin() as conn:
            lock_for_chain(conn, _ledger_lock(model))
            champ = current_champion(conn, model)
            if champ is None or champ.version != version:
                raise GovernanceError(
                    "not_champion",
                    409,
                    f"{model} v{version} is not the champion "
                    f"(champion: {('v' + champ.version) if champ else 'none'})",
                )
            ledger_id = _ledger_entry(
                conn, model, "revoke", version, None, champ.approval_id, actor, reason, now
            )
            if champ.approval_id:
                conn.execute(
                    update(approval_requests)
                    .where(approval_requests.c.id == champ.approval_id)
                    .values(status="revoked")
                )
            audit.append(
                conn,
                actor=actor.username,
                event_type="revocation",
                model=model,
                entity={
                    "model_version": version,
                    "approval_request_id": champ.approval_id,
                    "ledger_id": ledger_id,
                },
                details={"justification": reason, "break_glass": True, "alias": "champion"},
            )
            remove_alias(model)
    except GovernanceError as err:
        audit.record(
            engine,
            actor=actor.username,
            event_type="revocation_refused",
            model=model,
            entity={"model_version": version},
            details={"code": err.code, "reason": err.message},
        )
        raise
    return {
        "model": model,
        "action": "revoke",
        "from_version": version,
        "to_version": None,
        "ledger_id": ledger_id,
    }


def champion_as_of(engine: Engine | Connection, model: str, at: datetime) -> dict[str, Any] | None:
    """The ledger's champion at time ``at`` (None before the first promotion or after a revocation)."""
    r = _last_ledger_entry(engine, model, at)
    if r is None or r.action == "revoke" or r.to_version is None:
        return None
    return {
        "version": str(r.to_version),
        "approval_id": r.approval_id,
        "action": r.action,
        "ledger_id": r.id,
        "since": as_utc(r.at),
    }


def model_versions(engine: Engine, model: str) -> list[dict[str, Any]]:
    """Every version that asked for approval, newest first, with what the ledger says about it."""
    with engine.connect() as conn:
        reqs = (
            conn.execute(
                select(
                    approval_requests.c.id,
                    approval_requests.c.model_version,
                    approval_requests.c.training_run_id,
                    approval_requests.c.status,
                    approval_requests.c.created_at,
                    approval_requests.c.decided_at,
                    approval_requests.c.expires_at,
                )
                .where(approval_requests.c.model == model)
                .order_by(approval_requests.c.created_at.desc())
            )
            .mappings()
            .all()
        )
        revoked = _revoked_versions(conn, model)
        champ = current_champion(conn, model)
    now = utcnow()
    out = []
    for r in reqs:
        status = _shown_status(r["status"], r["expires_at"], now)
        version = str(r["model_version"])
        is_champ = champ is not None and champ.version == version
        out.append(
            {
                "version": version,
                "training_run_id": r["training_run_id"],
                "status": status,
                "approval_id": r["id"],
                "requested_at": r["created_at"],
                "approved_at": r["decided_at"] if status in ("approved", "revoked") else None,
                "revoked": version in revoked,
                "champion": is_champ,
                "can_roll_back_to": status == "approved" and version not in revoked and not is_champ,
            }
        )
    return out


def models_overview(engine: Engine, specs: list[ModelSpec]) -> list[dict[str, Any]]:
    """One row per model: its champion by the ledger, and how many versions wait for a decision."""
    out = []
    for spec in specs:
        versions = model_versions(engine, spec.name)
        champ = champion_as_of(engine, spec.name, utcnow())
        out.append(
            {
                "model": spec.name,
                "owner": spec.owner,
                "champion": champ,
                "pending": sum(v["status"] == "pending" for v in versions),
                "versions": len(versions),
            }
        )
    return out
