"""The one writer of promotion-ledger rows, and the hash that binds each row to its audit event.

``champion.current_champion`` trusts the newest ledger row, so a row inserted straight into the table (no approval,
no audit) would name a champion that scoring then serves. Every row is therefore written here, inside the
transaction of the governance change, and its hash is handed to the audit event of that change (the event that
names its ``ledger_id``, see ``audit.append``). That event is MACed under the audit key, so a forged or edited row
has no event vouching for its hash, and the champion check refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.engine import Connection

from airgate.core.hashing import canonical_sha256
from airgate.core.warehouse import as_utc, promotion_ledger

HASHED_COLUMNS = (
    "id",
    "model",
    "action",
    "from_version",
    "to_version",
    "approval_id",
    "actor",
    "reason",
    "at",
)


class LedgerWrite(NamedTuple):
    id: int
    row_hash: str


def row_hash(row: Mapping[str, Any] | Any) -> str:
    """SHA-256 of a ledger row's canonical content, as the database hands it back (``at`` as UTC microseconds)."""
    r = row if isinstance(row, Mapping) else row._mapping
    body = {c: r[c] for c in HASHED_COLUMNS}
    at = as_utc(r["at"])
    body["at"] = at.isoformat(timespec="microseconds") if at is not None else None
    body["id"] = int(r["id"])
    return canonical_sha256(body)


def write_entry(
    conn: Connection,
    *,
    model: str,
    action: str,
    from_version: str | None,
    to_version: str | None,
    approval_id: str | None,
    actor: str,
    reason: str | None,
    at: datetime,
) -> LedgerWrite:
    """Insert one ledger row in the caller's transaction; return its id and hash. The audit event of the change,
    appended in the same transaction, names both (``ledger_id``, ``ledger_hash``)."""
    res = conn.execute(
        promotion_ledger.insert().values(
            model=model,
            action=action,
            from_version=from_version,
            to_version=to_version,
            approval_id=approval_id,
            actor=actor,
            reason=reason,
            at=at,
        )
    )
    key = res.inserted_primary_key
    assert key is not None
    ledger_id = int(key[0])
    stored = conn.execute(select(promotion_ledger).where(promotion_ledger.c.id == ledger_id)).one()
    h = row_hash(stored)  # of what was stored, so the check later compares like with like
    return LedgerWrite(ledger_id, h)
