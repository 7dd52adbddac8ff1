"""Who the champion is, read from the promotion ledger: the source of truth, not the MLflow alias.

The rule is written once, here at the bottom, because every layer asks it: training compares a candidate with the
champion, governance decides and rolls back, scoring and monitoring serve and watch it. The newest ledger entry
names the champion; a revoke, or an entry with no version, means there is none.

The ledger is only trusted as far as the audit log vouches for it: the row read must be the one the newest
MAC-valid ledger event of that model (promotion, rollback, revocation, or the seal of an upgraded deployment)
recorded, with the same row hash (``ledger_rows``). A row inserted or edited behind governance's back, or a newest
row deleted, raises ``LedgerTampered``: scoring, gates and the plugin refuse loudly instead of serving it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from airgate.core import audit
from airgate.core.ledger_rows import row_hash
from airgate.core.warehouse import audit_log, promotion_ledger

# The audit events that carry a ledger row's id and hash (``ledger_sealed``: rows written before the binding).
LEDGER_EVENTS = ("promotion", "rollback", "revocation", "ledger_sealed")


class LedgerTampered(RuntimeError):
    """The promotion ledger holds a row no MAC-valid audit event vouches for: nothing may be served from it."""

    def __init__(self, model: str, ledger_id: int | None, why: str) -> None:
        self.model = model
        self.ledger_id = ledger_id
        self.why = why
        super().__init__(
            f"the promotion ledger of '{model}' cannot be trusted: row {ledger_id} {why}. No champion is served "
            "until it is investigated (python -m airgate.cli audit verify)"
        )


@dataclass(frozen=True)
class Champion:
    version: str
    approval_id: str | None
    action: str


def _run(engine: Engine | Connection, q: Any) -> Any:
    if isinstance(engine, Connection):
        return engine.execute(q)
    with engine.connect() as conn:
        return conn.execute(q).all()


def _ledger_events(model: str) -> Any:
    c = audit_log.c
    return select(audit_log).where(c.model == model, c.event_type.in_(LEDGER_EVENTS)).order_by(c.seq.desc())


def binding_fault(event: Any, row: Any) -> str | None:
    """Why ``event`` does not vouch for ledger ``row`` (None when it does)."""
    if event is None:
        return "is not recorded by any audit event"
    ev = event._mapping
    if ev["entity"].get("ledger_id") != int(row.id):
        return f"is not the row the newest ledger audit event (seq {ev['seq']}) records"
    if ev["entity"].get("ledger_hash") != row_hash(row):
        return f"does not match the hash its audit event (seq {ev['seq']}) recorded"
    if not audit.authentic(ev):
        return f"is recorded by an audit event (seq {ev['seq']}) that fails its MAC"
    return None


def _event_for(engine: Engine | Connection, model: str, row: Any, newest: bool) -> Any:
    """The newest ledger event of ``model`` (``newest``), or the newest one naming ``row`` (a row as of a time)."""
    q = _ledger_events(model)
    if not newest:
        q = q.where(audit_log.c.entity["ledger_id"].as_integer() == int(row.id))
    rows = list(_run(engine, q.limit(1)))
    return rows[0] if rows else None


def last_ledger_entry(engine: Engine | Connection, model: str, at: datetime | None = None) -> Any:
    """The newest ledger row of ``model`` (written by ``at``, when given), inside the caller's transaction if any.

    Checked against the audit log: the newest row must be the one the newest ledger event records; a row as of
    ``at`` must be the one some ledger event records. Raises ``LedgerTampered`` otherwise."""
    q = select(promotion_ledger).where(promotion_ledger.c.model == model)
    if at is not None:
        q = q.where(promotion_ledger.c.at <= at)
    rows = list(_run(engine, q.order_by(promotion_ledger.c.id.desc()).limit(1)))
    if not rows:
        return None
    row = rows[0]
    fault = binding_fault(_event_for(engine, model, row, newest=at is None), row)
    if fault:
        raise LedgerTampered(model, int(row.id), fault)
    return row


def current_champion(engine: Engine | Connection, model: str) -> Champion | None:
    """The approved champion according to the promotion ledger, or None (never approved, or revoked).
    Raises ``LedgerTampered`` when the newest ledger row is not the one the audit log vouches for."""
    r = last_ledger_entry(engine, model)
    if r is None or r.action == "revoke" or r.to_version is None:
        return None
    return Champion(str(r.to_version), r.approval_id, r.action)
