"""Append-only, hash-chained audit log in the warehouse.

Each entry's hash covers its content and the previous entry's hash, so editing or deleting any row breaks the chain
at that row and ``verify_chain`` names it. Appends take the chain lock, so concurrent writers (tasks, the plugin)
cannot fork the chain. ``append`` accepts an open connection so an event commits atomically with the change it
describes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import Connection

from airgate.warehouse import as_utc, audit_log, lock_for_chain, utcnow

GENESIS = "0" * 64
CHAIN_LOCK = "airgate.audit_log"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def entry_hash(prev_hash: str, at: datetime, actor: str, event_type: str, model: str | None,
               entity: Mapping[str, Any], details: Mapping[str, Any]) -> str:
    at_utc = as_utc(at)
    assert at_utc is not None
    body = _canonical({
        "prev": prev_hash, "at": at_utc.isoformat(timespec="microseconds"), "actor": actor,
        "type": event_type, "model": model, "entity": dict(entity), "details": dict(details),
    })
    return hashlib.sha256(body.encode()).hexdigest()


def append(conn: Connection, *, actor: str, event_type: str, model: str | None,
           entity: Mapping[str, Any], details: Mapping[str, Any] | None = None) -> str:
    """Append one event inside the caller's transaction and return its hash."""
    lock_for_chain(conn, CHAIN_LOCK)
    details = dict(details or {})
    prev = conn.execute(select(audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).scalar()
    prev_hash = prev or GENESIS
    at = utcnow()
    # Round-trip through JSON so what is hashed is exactly what the database will hand back.
    entity_j = json.loads(_canonical(entity))
    details_j = json.loads(_canonical(details))
    h = entry_hash(prev_hash, at, actor, event_type, model, entity_j, details_j)
    conn.execute(audit_log.insert().values(
        at=at, actor=actor, event_type=event_type, model=model, entity=entity_j, details=details_j,
        prev_hash=prev_hash, hash=h,
    ))
    return h


def record(engine: Engine, **kwargs: Any) -> str:
    """Append one event in its own transaction."""
    with engine.begin() as conn:
        return append(conn, **kwargs)


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    first_broken_seq: int | None = None
    reason: str | None = None


def verify_chain(engine: Engine, batch: int = 5000) -> ChainReport:
    """Walk the whole log in order and report the first entry whose link or content does not check out."""
    prev_hash = GENESIS
    count = 0
    last_seq = 0
    with engine.connect() as conn:
        while True:
            rows = conn.execute(
                select(audit_log).where(audit_log.c.seq > last_seq).order_by(audit_log.c.seq).limit(batch)
            ).mappings().all()
            if not rows:
                break
            for r in rows:
                if r["prev_hash"] != prev_hash:
                    return ChainReport(False, count, r["seq"], "link to the previous entry is broken")
                expected = entry_hash(prev_hash, r["at"], r["actor"], r["event_type"], r["model"],
                                      r["entity"], r["details"])
                if expected != r["hash"]:
                    return ChainReport(False, count, r["seq"], "entry content does not match its hash")
                prev_hash = r["hash"]
                count += 1
                last_seq = r["seq"]
    return ChainReport(True, count)


def events(engine: Engine, *, model: str | None = None, event_type: str | None = None,
           limit: int = 1000) -> list[dict[str, Any]]:
    q = select(audit_log).order_by(audit_log.c.seq)
    if model is not None:
        q = q.where(audit_log.c.model == model)
    if event_type is not None:
        q = q.where(audit_log.c.event_type == event_type)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(q.limit(limit)).mappings()]


def count(engine: Engine, model: str | None = None) -> int:
    q = select(func.count()).select_from(audit_log)
    if model is not None:
        q = q.where(audit_log.c.model == model)
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())
