"""Append-only, hash-chained, keyed audit log in the warehouse.

Each entry's hash covers its content and the previous entry's hash, so editing or deleting any row breaks the chain
at that row and ``verify_chain`` names it. A hash alone proves nothing against someone who can write the table
(they edit a row and re-hash every later one), so each entry also carries ``mac`` = HMAC-SHA256 of its hash under
the audit key (``settings.audit_key``), which lives outside the warehouse. Deleting the newest entries leaves a
valid chain; the anchors (``audit_anchor``) kept outside the warehouse catch that. Appends take the chain lock, so
concurrent writers (tasks, the plugin) cannot fork the chain. ``append`` accepts an open connection so an event
commits atomically with the change it describes: the event of a promotion-ledger row
(``ledger_rows.write_entry``) names its ``ledger_id`` and ``ledger_hash``.
"""

from __future__ import annotations

import hashlib
import hmac
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
MAC_CONTEXT = b"airgate.audit.entry.v1\x00"


def audit_key() -> bytes:
    """The audit key, read per call (lazy: settings reaches Airflow's configuration when the variable is unset)."""
    from airgate.core.settings import audit_key as configured

    return configured()


def keyed_mac(key: bytes, context: bytes, text: str) -> str:
    """HMAC-SHA256 of ``text`` under ``key``, domain-separated by ``context`` (an entry MAC is never an anchor's)."""
    return hmac.new(key, context + text.encode("utf-8"), hashlib.sha256).hexdigest()


def entry_mac(key: bytes, entry_hash_hex: str) -> str:
    """An entry's MAC: its hash already covers its content and the previous hash, so MACing it binds both."""
    return keyed_mac(key, MAC_CONTEXT, entry_hash_hex)


def mac_matches(key: bytes, entry_hash_hex: str, mac: str | None) -> bool:
    return mac is not None and hmac.compare_digest(entry_mac(key, entry_hash_hex), mac)


def row_hash(r: Mapping[str, Any]) -> str:
    """The hash an entry's stored content gives (compare with its ``hash`` column)."""
    return entry_hash(
        r["prev_hash"], r["at"], r["actor"], r["event_type"], r["model"], r["entity"], r["details"]
    )


def authentic(r: Mapping[str, Any], key: bytes | None = None) -> bool:
    """Whether one stored entry is what the key-holder wrote: content matches its hash, the hash its MAC."""
    return row_hash(r) == r["hash"] and mac_matches(key or audit_key(), r["hash"], r["mac"])


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
    key = audit_key()  # before the lock: a missing key fails fast, holding nothing
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
            mac=entry_mac(key, h),
        )
    )
    return h


def record(engine: Engine, **kwargs: Any) -> str:
    """Append one event in its own transaction."""
    with engine.begin() as conn:
        return append(conn, **kwargs)


@dataclass(frozen=True)
class ChainReport:
    """What a check found: ``ok``, or the first entry (``first_broken_seq``) that fails and why. ``anchored_seq``
    is the newest anchor the log was checked against (``audit_anchor.verify``; None from the chain walk alone)."""

    ok: bool
    entries: int
    first_broken_seq: int | None = None
    reason: str | None = None
    anchored_seq: int | None = None


UNSEALED = "entry has no MAC (written before the audit key): run `python -m airgate.cli audit seal`"


def _entry_fault(r: Mapping[str, Any], prev_hash: str, key: bytes | None) -> str | None:
    """Why one entry does not check out, or None. ``key`` None checks links and hashes only (the seal's walk)."""
    if r["prev_hash"] != prev_hash:
        return "link to the previous entry is broken"
    if row_hash(r) != r["hash"]:
        return "entry content does not match its hash"
    if key is None:
        return None
    if r["mac"] is None:
        return UNSEALED
    if not mac_matches(key, r["hash"], r["mac"]):
        return "entry MAC does not match: edited or re-hashed without the audit key"
    return None


def walk(conn: Connection, batch: int = 5000, after: int = 0) -> Iterator[Any]:
    """Every entry after ``after``, oldest first, ``batch`` rows per query (a log of millions never loads whole)."""
    last = after
    while True:
        q = select(audit_log).where(audit_log.c.seq > last).order_by(audit_log.c.seq).limit(batch)
        rows = conn.execute(q).mappings().all()
        yield from rows
        if len(rows) < batch:
            return
        last = rows[-1]["seq"]


def check_chain(conn: Connection, key: bytes | None, batch: int = 5000) -> ChainReport:
    """Walk the log in order on ``conn``; the first entry whose link, content or MAC fails is named."""
    prev_hash = GENESIS
    n = 0
    for r in walk(conn, batch):
        fault = _entry_fault(r, prev_hash, key)
        if fault:
            return ChainReport(False, n, r["seq"], fault)
        prev_hash = r["hash"]
        n += 1
    return ChainReport(True, n)


def verify_chain(engine: Engine, batch: int = 5000) -> ChainReport:
    """The chain itself: every link, hash and MAC. Truncation of the newest entries needs the anchors as well:
    ``audit_anchor.verify`` is the whole check (the plugin's verify route and ``cli audit verify`` run it)."""
    key = audit_key()
    with engine.connect() as conn:
        return check_chain(conn, key, batch)


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


EXPORT_COLUMNS = [
    "seq",
    "at",
    "actor",
    "event_type",
    "model",
    "entity",
    "details",
    "prev_hash",
    "hash",
    "mac",
]


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
