"""Append-only, hash-chained audit log in the warehouse.

Each entry's hash covers its content and the previous entry's hash, so editing or deleting any row breaks the chain
at that row and ``verify_chain`` names it. Appends take the chain lock, so concurrent writers (tasks, the plugin)
cannot fork the chain. ``append`` accepts an open connection so an event commits atomically with the change it
describes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import Connection

from airgate.core.hashing import canonical_json
from airgate.core.warehouse import as_utc, audit_log, lock_for_chain, utcnow

GENESIS = "0" * 64
CHAIN_LOCK = "airgate.audit_log"


def entry_hash(
    prev_hash: str,
    at: datetime,
    actor: str,
    event_type: str,
    model: str | None,
    entity: Mapping[str, Any],
    details: Mapping[str, Any],
) -> str:
    at_utc = as_utc(at)
    assert at_utc is not None
    body = canonical_json(
        {
            "prev": prev_hash,
            "at": at_utc.isoformat(timespec="microseconds"),
            "actor": actor,
            "type": event_type,
            "model": model,
            "entity": dict(entity),
            "details": dict(details),
        }
    )
    return hashlib.sha256(body.encode()).hexdigest()


def append(
    conn: Connection,
    *,
    actor: str,
    event_type: str,
    model: str | None,
    entity: Mapping[str, Any],
    details: Mapping[str, Any] | None = None,
) -> str:
    """Append one event inside the caller's transaction and return its hash."""
    lock_for_chain(conn, CHAIN_LOCK)
    details = dict(details or {})
    prev = conn.execute(select(audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).scalar()
    prev_hash = prev or GENESIS
    at = utcnow()
    # Round-trip through JSON so what is hashed is exactly what the database will hand back.
    entity_j = json.loads(canonical_json(entity))
    details_j = json.loads(canonical_json(details))
    h = entry_hash(prev_hash, at, actor, event_type, model, entity_j, details_j)
    conn.execute(
        audit_log.insert().values(
            at=at,
            actor=actor,
            event_type=event_type,
            model=model,
            entity=entity_j,
            details=details_j,
            prev_hash=prev_hash,
            hash=h,
        )
    )
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
            rows = (
                conn.execute(
                    select(audit_log).where(audit_log.c.seq > last_seq).order_by(audit_log.c.seq).limit(batch)
                )
                .mappings()
                .all()
            )
            if not rows:
                break
            for r in rows:
                if r["prev_hash"] != prev_hash:
                    return ChainReport(False, count, r["seq"], "link to the previous entry is broken")
                expected = entry_hash(
                    prev_hash, r["at"], r["actor"], r["event_type"], r["model"], r["entity"], r["details"]
                )
                if expected != r["hash"]:
                    return ChainReport(False, count, r["seq"], "entry content does not match its hash")
                prev_hash = r["hash"]
                count += 1
                last_seq = r["seq"]
    return ChainReport(True, count)


def events(
    engine: Engine, *, model: str | None = None, event_type: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
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


@dataclass(frozen=True)
class AuditFilter:
    """What an auditor narrows the log by. Every value is bound as a parameter, never spliced into SQL."""

    model: str | None = None
    model_version: str | None = None
    actor: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> list[Any]:
        c = audit_log.c
        out: list[Any] = []
        if self.model is not None:
            out.append(c.model == self.model)
        if self.model_version is not None:
            out.append(c.entity["model_version"].as_string() == self.model_version)
        if self.actor is not None:
            out.append(c.actor == self.actor)
        if self.event_type is not None:
            out.append(c.event_type == self.event_type)
        if self.since is not None:
            out.append(c.at >= self.since)
        if self.until is not None:
            out.append(c.at < self.until)
        return out


@dataclass(frozen=True)
class AuditPage:
    events: list[dict[str, Any]]
    next_before: int | None  # pass as ``before`` for the next (older) page; None when this is the last


def page(engine: Engine, flt: AuditFilter, before: int | None = None, limit: int = 100) -> AuditPage:
    """Newest first, keyset-paginated on ``seq``: page N costs what page 1 costs, even with millions of rows."""
    limit = max(1, min(limit, 1000))
    q = select(audit_log).where(*flt.where()).order_by(audit_log.c.seq.desc()).limit(limit + 1)
    if before is not None:
        q = q.where(audit_log.c.seq < before)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows, rows[-1]["seq"] if more and rows else None)


def iter_filtered(engine: Engine, flt: AuditFilter, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Every matching event, oldest first, in batches (an export of the whole log does not load it at once)."""
    last = 0
    while True:
        q = (
            select(audit_log)
            .where(*flt.where(), audit_log.c.seq > last)
            .order_by(audit_log.c.seq)
            .limit(batch)
        )
        with engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
        yield from rows
        if len(rows) < batch:
            return
        last = rows[-1]["seq"]


EXPORT_COLUMNS = ["seq", "at", "actor", "event_type", "model", "entity", "details", "prev_hash", "hash"]


def _csv_safe(value: Any) -> str:
    """A cell a spreadsheet will not execute: text that starts like a formula is prefixed with a quote."""
    text = (
        value
        if isinstance(value, str)
        else canonical_json(value)
        if isinstance(value, (dict, list))
        else str(value)
    )
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(EXPORT_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                _csv_safe(as_utc(r["at"]).isoformat() if k == "at" else r[k])  # type: ignore[union-attr]
                for k in EXPORT_COLUMNS
            ]
        )
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


def to_json_record(r: dict[str, Any]) -> dict[str, Any]:
    out = {k: r[k] for k in EXPORT_COLUMNS}
    out["at"] = as_utc(r["at"]).isoformat()  # type: ignore[union-attr]
    return out


def event_types(engine: Engine) -> list[str]:
    """The distinct event types on record, for an auditor's filter."""
    with engine.connect() as conn:
        return sorted(str(t) for t in conn.execute(select(audit_log.c.event_type).distinct()).scalars())
