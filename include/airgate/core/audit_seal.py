"""Sealing a log written before the audit key: MAC the old entries once and bind the ledger rows they describe.

A deployment upgraded to revision 0013 has entries without a MAC and ledger rows no audit event records the hash
of. ``seal`` (``python -m airgate.cli audit seal``; ``migrate`` runs it when the key is set) checks every old link
and hash first and refuses if any fails (sealing must not bless a chain that was already broken), then, under the
chain lock, MACs every unsealed entry, appends one ``audit_sealed`` event, and one ``ledger_sealed`` event for each
ledger row no event vouches for, oldest first (so each model's newest row is bound by its newest ledger event).
What it seals is trusted on first use: run it right after the upgrade. Running it again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Engine

from airgate.core import audit
from airgate.core.champion import LEDGER_EVENTS
from airgate.core.ledger_rows import row_hash
from airgate.core.warehouse import audit_log, lock_for_chain, promotion_ledger

ACTOR = "airgate"


@dataclass(frozen=True)
class SealReport:
    ok: bool
    sealed: int = 0  # entries that got their MAC now
    ledger_bound: list[int] = field(default_factory=list)  # ledger ids bound by a ledger_sealed event now
    first_broken_seq: int | None = None
    reason: str | None = None


def _mac_unsealed(conn: Connection, key: bytes, batch: int) -> tuple[int, int | None, str | None]:
    """MAC the entries that have none, after checking each link and hash; (count, broken seq, why)."""
    prev, todo = audit.GENESIS, []
    for r in audit.walk(conn, batch):
        fault = audit._entry_fault(r, prev, None)
        if fault is None and r["mac"] is not None and not audit.mac_matches(key, r["hash"], r["mac"]):
            fault = "entry MAC does not match: edited or re-hashed without the audit key"
        if fault:
            return 0, r["seq"], fault
        if r["mac"] is None:
            todo.append((r["seq"], r["hash"]))
        prev = r["hash"]
    stmt = update(audit_log).where(audit_log.c.seq == bindparam("s")).values(mac=bindparam("m"))
    for i in range(0, len(todo), batch):
        conn.execute(stmt, [{"s": seq, "m": audit.entry_mac(key, h)} for seq, h in todo[i : i + batch]])
    return len(todo), None, None


def _vouched(conn: Connection) -> set[tuple[int, str]]:
    """(ledger id, row hash) pairs some ledger event already records."""
    q = select(audit_log.c.entity).where(audit_log.c.event_type.in_(LEDGER_EVENTS))
    return {(e.get("ledger_id"), e.get("ledger_hash")) for e in conn.execute(q).scalars()}


def _to_bind(conn: Connection) -> list[tuple[str, Any]]:
    """Per model, its rows no event vouches for, oldest first; then its newest row again if that one was vouched
    (a promotion since the upgrade): each model's newest ledger event must name its newest row."""
    vouched = _vouched(conn)
    by_model: dict[str, list[Any]] = {}
    for r in conn.execute(select(promotion_ledger).order_by(promotion_ledger.c.id)).all():
        by_model.setdefault(r.model, []).append(r)
    out: list[tuple[str, Any]] = []
    for model, rows in by_model.items():
        todo = [r for r in rows if (int(r.id), row_hash(r)) not in vouched]
        if todo and todo[-1] is not rows[-1]:
            todo.append(rows[-1])
        out += [(model, r) for r in todo]
    return out


def _bind_ledger(conn: Connection) -> list[int]:
    bound = []
    for model, row in _to_bind(conn):
        audit.append(
            conn,
            actor=ACTOR,
            event_type="ledger_sealed",
            model=model,
            entity={"ledger_id": int(row.id), "ledger_hash": row_hash(row), "model_version": row.to_version},
            details={
                "action": row.action,
                "note": "ledger row written before rows were bound to the audit log",
            },
        )
        bound.append(int(row.id))
    return bound


def seal(engine: Engine, batch: int = 5000) -> SealReport:
    """Seal what is unsealed (see the module docstring); refuse, changing nothing, if the old chain is broken."""
    key = audit.audit_key()
    with engine.begin() as conn:
        lock_for_chain(conn, audit.CHAIN_LOCK)
        sealed, seq, why = _mac_unsealed(conn, key, batch)
        if why:
            return SealReport(False, first_broken_seq=seq, reason=why)
        if sealed:
            audit.append(
                conn,
                actor=ACTOR,
                event_type="audit_sealed",
                model=None,
                entity={},
                details={"sealed_entries": sealed},
            )
        bound = _bind_ledger(conn)
    return SealReport(True, sealed, bound)
