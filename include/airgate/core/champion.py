"""Who the champion is, read from the promotion ledger: the source of truth, not the MLflow alias.

The rule is written once, here at the bottom, because every layer asks it: training compares a candidate with the
champion, governance decides and rolls back, scoring and monitoring serve and watch it. The newest ledger entry
names the champion; a revoke, or an entry with no version, means there is none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from airgate.core.warehouse import promotion_ledger


@dataclass(frozen=True)
class Champion:
    version: str
    approval_id: str | None
    action: str


def last_ledger_entry(engine: Engine | Connection, model: str, at: datetime | None = None) -> Any:
    """The newest ledger row of ``model`` (written by ``at``, when given), inside the caller's transaction if any."""
    q = select(promotion_ledger).where(promotion_ledger.c.model == model)
    if at is not None:
        q = q.where(promotion_ledger.c.at <= at)
    q = q.order_by(promotion_ledger.c.id.desc()).limit(1)
    if isinstance(engine, Connection):
        return engine.execute(q).first()
    with engine.connect() as conn:
        return conn.execute(q).first()


def current_champion(engine: Engine | Connection, model: str) -> Champion | None:
    """The approved champion according to the promotion ledger, or None (never approved, or revoked)."""
    r = last_ledger_entry(engine, model)
    if r is None or r.action == "revoke" or r.to_version is None:
        return None
    return Champion(str(r.to_version), r.approval_id, r.action)
