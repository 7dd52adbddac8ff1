"""The promotion ledger after the decision: which versions are approved, the effect of a confirmed rollback and
break-glass revocation (each with a justification), the champion as of a time, and the per-model read-outs the
Models page shows. Who may propose and confirm a rollback (four eyes) lives in ``airgate.governance.rollbacks``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from airgate.core import audit, ledger_rows
from airgate.core.champion import current_champion
from airgate.core.champion import last_ledger_entry as _last_ledger_entry
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import approval_requests, as_utc, lock_for_chain, promotion_ledger, utcnow
from airgate.governance import notices
from airgate.governance.decisions import AliasMover
from airgate.governance.requests import (
    Actor,
    GovernanceError,
    _ledger_lock,
    _shown_status,
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
) -> ledger_rows.LedgerWrite:
    """The row, through the one ledger writer. The audit event of the change names its ``ledger_id`` and
    ``ledger_hash``, which is what lets ``current_champion`` trust it."""
    return ledger_rows.write_entry(
        conn,
        model=model,
        action=action,
        from_version=from_version,
        to_version=to_version,
        approval_id=approval_id,
        actor=actor.username,
        reason=reason,
        at=now,
    )


@dataclass(frozen=True)
class RollbackTarget:
    """An approved, never revoked version that is not the champion: what a rollback may return to."""

    to_version: str
    approval_id: str
    from_version: str | None  # the champion now (None after a revocation)


def rollback_target(conn: Connection, model: str, to_version: str) -> RollbackTarget:
    """Check that ``to_version`` may become champion again (call under the ledger lock); refuse otherwise."""
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
        raise GovernanceError("already_champion", 409, f"{model} v{to_version} is already the champion")
    return RollbackTarget(to_version, str(req.id), champ.version if champ else None)


def apply_rollback(
    conn: Connection,
    model: str,
    actor: Actor,
    to_version: str,
    reason: str,
    move_alias: AliasMover,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Make an earlier approved (and never revoked) version the champion again, inside ``conn``'s transaction:
    the ledger row, its ``rollback`` audit event, then the alias (last: if it raises, nothing commits).

    Only a confirmed four-eyes proposal (``airgate.governance.rollbacks``) calls this; ``details`` says which. The
    rolled-back-to version keeps its original approval id, so scoring and lineage show which approval it runs
    under, and the ledger row shows that it got there by a rollback.
    """
    lock_for_chain(conn, _ledger_lock(model))
    target = rollback_target(conn, model, to_version)
    from_version = target.from_version
    entry = _ledger_entry(
        conn, model, "rollback", from_version, to_version, target.approval_id, actor, reason, now
    )
    ledger_id = entry.id
    audit.append(
        conn,
        actor=actor.username,
        event_type="rollback",
        model=model,
        entity={
            "model_version": to_version,
            "approval_request_id": target.approval_id,
            "ledger_id": entry.id,
            "ledger_hash": entry.row_hash,
        },
        details={
            "from_version": from_version,
            "to_version": to_version,
            "alias": "champion",
            "justification": reason,
            **(details or {}),
        },
    )
    move_alias(model, to_version)
    return {
        "model": model,
        "action": "rollback",
        "from_version": from_version,
        "to_version": to_version,
        "approval_id": target.approval_id,
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

    Single-person by design (an emergency cannot wait for a second approver), so it is loud instead: its audit
    event carries ``severity: break_glass`` and, once it has committed, the spec's governance notifiers are told.
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
            entry = _ledger_entry(conn, model, "revoke", version, None, champ.approval_id, actor, reason, now)
            ledger_id = entry.id
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
                    "ledger_id": entry.id,
                    "ledger_hash": entry.row_hash,
                },
                details={
                    "justification": reason,
                    "break_glass": True,
                    "severity": "break_glass",
                    "alias": "champion",
                },
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
    notices.notify(
        engine,
        spec,
        "break_glass",
        f"BREAK-GLASS: {actor.username} revoked {model} v{version}; scoring refuses until a version is approved "
        f"or rolled back to. Justification: {reason}",
        {"version": version, "actor": actor.username, "ledger_id": ledger_id, "justification": reason},
    )
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
