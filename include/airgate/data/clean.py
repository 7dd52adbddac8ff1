"""Cleaning: a raw version becomes a clean version plus quarantined rows, each with a reason code.

The invariant holds for every batch and is checked before anything is written:
rows in = rows accepted + rows quarantined. Rules come from the spec. The cut-off for "in the future" is the time
the raw batch was ingested, not the wall clock, so re-cleaning a raw version always gives the same clean version.

A raw version is read in chunks of row numbers, and each chunk is judged vectorised (``clean_rules``), so memory
follows the chunk size, not the batch or the model's history. The batch-level rules are asked of the database, in
the one transaction that writes the version: a key is a duplicate if clean_events already has it (an earlier
version) or this run staged it already (an earlier chunk); entities with too few events are counted in SQL. The
accepted and rejected rows wait in temporary tables until the content hash (the version id) is known, then move
to clean_events and quarantine in one statement each.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import Text, cast, func, select
from sqlalchemy.engine import Connection, Engine

from airgate.core import audit, datasets, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import as_utc, bulk_read_tuples, dataset_versions, raw_rows
from airgate.data import clean_stage as stage
from airgate.data.clean_rules import (  # noqa: F401 - EVENT_COLUMNS and MAX_RESPONSE_MS are imported from here
    EVENT_COLUMNS,
    MAX_RESPONSE_MS,
    Catalog,
    Roles,
    Verdict,
    parse_contents,
    row_rules,
)

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class CleanOutcome:
    raw_version_id: str
    clean_version_id: str
    rows_in: int
    accepted: int
    quarantined: int
    reasons: dict[str, int]


@dataclass(frozen=True)
class CleanFailure:
    """A raw version that could not be cleaned at all (not one of its rows: the version), and why."""

    raw_version_id: str
    error: str


@dataclass
class CleanResult:
    model: str
    versions: list[CleanOutcome] = field(default_factory=list)
    failed: list[CleanFailure] = field(default_factory=list)

    @property
    def clean_version_ids(self) -> list[str]:
        return [v.clean_version_id for v in self.versions]


class InvariantBroken(RuntimeError):
    pass


class RawVersionUnreadable(RuntimeError):
    """The raw version as a whole cannot be cleaned (its rows are gone or were never all written): not a bug, and
    not a reason to hold back the versions behind it."""


@dataclass(frozen=True)
class _Batch:
    """What every chunk of one raw version is judged with."""

    spec: ModelSpec
    raw_version_id: str
    roles: Roles
    as_of: pd.Timestamp
    catalog: Catalog | None


def load_catalog(spec: ModelSpec) -> pd.DataFrame | None:
    """The item catalog (item_id, skill_id) named by the spec, if any, from storage (``storage.location``:
    relative paths are under ``AIRGATE_STORAGE_URL``, by default ``$AIRGATE_HOME``). A named catalog that is not
    there is an error: cleaning never runs without the check the spec asks for. With ``privacy.pseudonymize``, the
    catalog's ids that are pseudonymised in the data are compared as the same pseudonyms."""
    if not spec.cleaning.item_catalog:
        return None
    what = (
        "the item catalog, spec field cleaning.item_catalog: publish the catalog there, or remove the field to "
        "skip the check"
    )
    with storage.open_read(spec.cleaning.item_catalog, what=what) as fh:
        catalog = pd.read_csv(fh, dtype=str)
    if spec.privacy.pseudonymize:
        from airgate.data.privacy import Pseudonymizer

        pseudo = Pseudonymizer.from_spec(spec)
        catalog = pseudo.apply_frame(catalog, [c for c in ("item_id", "skill_id") if c in pseudo.columns])
    return catalog


def pending_raw_versions(engine: Engine, model: str) -> list[str]:
    """Raw versions that no clean version derives from yet, oldest first."""
    raws = datasets.list_versions(engine, model, "raw")
    cleaned = {p for v in datasets.list_versions(engine, model, "clean") for p in v.parents}
    return [v.version_id for v in raws if v.version_id not in cleaned]


class _Digest:
    """The clean version's content hash, fed chunk by chunk: the rows that passed the row and duplicate rules,
    in row order, and each rejected row's (row number, reason), in row order. The two streams are hashed apart so
    the chunk size does not change the hash. The too-few-events rule is a function of those and of the rules (in
    the header), so the hash fixes the whole result; a re-clean gives the same id."""

    def __init__(self, model: str, extra: dict[str, Any]) -> None:
        self._header = json.dumps(
            {"kind": "clean", "model": model, "extra": extra}, sort_keys=True, default=str
        )
        self._accepted = hashlib.sha256()
        self._rejected = hashlib.sha256()

    def add(self, accepted: pd.DataFrame, rejected: pd.Series) -> None:
        self._accepted.update(accepted.to_csv(index=False, header=False, lineterminator="\n").encode())
        self._rejected.update(rejected.to_csv(header=False, lineterminator="\n").encode())

    def hexdigest(self) -> str:
        parts = [self._header, self._accepted.hexdigest(), self._rejected.hexdigest()]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _read_chunk(conn: Connection, raw_version_id: str, lo: int, hi: int) -> pd.Series:
    """Raw contents (JSON text as stored) of row numbers [lo, hi), indexed by row number, by the warehouse's bulk
    read (COPY on PostgreSQL)."""
    q = (
        select(raw_rows.c.row_num, cast(raw_rows.c.content, Text).label("content"))
        .where(raw_rows.c.version_id == raw_version_id, raw_rows.c.row_num >= lo, raw_rows.c.row_num < hi)
        .order_by(raw_rows.c.row_num)
    )
    _, data = bulk_read_tuples(conn, q)
    if not data:  # a gap in the row numbers
        return pd.Series([], index=pd.Index([], name="row_num", dtype="int64"), dtype=object)
    if isinstance(data, bytes):
        frame = pd.read_csv(
            io.BytesIO(data),
            names=["row_num", "content"],
            header=None,
            dtype={"content": str},
            keep_default_na=False,
        )
        return pd.Series(
            frame["content"].to_numpy(), index=pd.Index(frame["row_num"], name="row_num"), dtype=object
        )
    return pd.Series([c for _, c in data], index=pd.Index([n for n, _ in data], name="row_num"), dtype=object)


def _flag_duplicates(conn: Connection, b: _Batch, v: Verdict) -> None:
    """Duplicate keys among the rows that passed the row rules (a rejected first copy keeps its own reason and
    does not hide a later valid one): keys an earlier version holds, then keys seen earlier in this batch."""
    ok = v.ok
    keys = v.values.loc[ok, "event_id"]
    if keys.empty:
        return
    within = keys.duplicated(keep="first")
    earlier, staged = stage.known_keys(conn, b.spec.name, keys[~within].tolist())
    key = b.roles.name("event_id")
    is_earlier = keys.isin(earlier)
    _flag(v, is_earlier.index[is_earlier], "duplicate_event_id", f"{key} already in an earlier version")
    again = (within | keys.isin(staged)) & ~is_earlier
    _flag(v, again.index[again], "duplicate_event_id", f"{key} repeated within the batch")


def _flag(v: Verdict, rows: pd.Index, code: str, text: str) -> None:
    v.reason[rows] = code
    v.detail[rows] = text


def _clean_chunk(
    conn: Connection, b: _Batch, contents: pd.Series, digest: _Digest, tally: Counter[str]
) -> None:
    verdict = row_rules(
        parse_contents(contents.tolist(), contents.index, b.roles), b.spec, b.roles, b.as_of, b.catalog
    )
    _flag_duplicates(conn, b, verdict)
    ok = verdict.ok
    accepted = stage.accepted_frame(verdict.values[ok])
    rejected = verdict.reason[~ok]
    stage.put_accepted(conn, accepted)
    stage.put_rejected(conn, rejected, verdict.detail[~ok], contents[~ok])
    digest.add(accepted, rejected)
    tally.update(rejected.value_counts().to_dict())


def _extent(conn: Connection, raw_version_id: str) -> tuple[Any, int, int, int]:
    """The raw version's row (its arrival time is the cut-off), and its row numbers' range and count, checked
    against what collect recorded."""
    meta = conn.execute(
        select(dataset_versions).where(dataset_versions.c.version_id == raw_version_id)
    ).first()
    if meta is None or meta.kind != "raw":
        raise LookupError(f"{raw_version_id} is not a raw version: list them with datasets.list_versions")
    lo, hi, n = conn.execute(
        select(func.min(raw_rows.c.row_num), func.max(raw_rows.c.row_num), func.count()).where(
            raw_rows.c.version_id == raw_version_id
        )
    ).one()
    if n != meta.row_count:
        raise RawVersionUnreadable(
            f"{raw_version_id}: {n} raw rows stored, {meta.row_count} recorded at ingest (purged by "
            "privacy.retention_days, or lost): re-land its file to ingest it again"
        )
    return meta, int(lo or 0), int(hi if hi is not None else -1), int(n)


def _summary(rows_in: int, accepted: int, tally: Counter[str]) -> dict[str, Any]:
    reasons = {k: int(tally[k]) for k in sorted(tally)}
    return {
        "rows_in": rows_in,
        "accepted": accepted,
        "quarantined": sum(reasons.values()),
        "reasons": reasons,
        "rows_added": accepted,
    }


def clean_version(
    engine: Engine, spec: ModelSpec, raw_version_id: str, actor: str = "airflow"
) -> CleanOutcome:
    """Clean one raw version, in one transaction: the clean version, its rows and its quarantine, audited."""
    catalog = Catalog.of(load_catalog(spec))
    roles = Roles.of(spec)
    extra = {
        "raw": raw_version_id,
        "rules": spec.cleaning.model_dump(),
        "roles": roles.source_of,
        "naive_timezone": spec.data_schema.naive_timezone,
    }
    digest, tally = _Digest(spec.name, extra), Counter[str]()
    with engine.begin() as conn:
        meta, lo, hi, rows_in = _extent(conn, raw_version_id)
        b = _Batch(spec, raw_version_id, roles, pd.Timestamp(as_utc(meta.created_at)), catalog)
        stage.create(conn)
        for start in range(lo, hi + 1, CHUNK_ROWS):
            contents = _read_chunk(conn, raw_version_id, start, start + CHUNK_ROWS)
            if len(contents):
                _clean_chunk(conn, b, contents, digest, tally)
        few = stage.reject_too_few(conn, raw_version_id, spec.cleaning.min_events_per_student, roles)
        if few:
            tally["too_few_events"] += few
        accepted = stage.accepted_count(conn)
        summary = _summary(rows_in, accepted, tally)
        if accepted + summary["quarantined"] != rows_in:
            raise InvariantBroken(
                f"{raw_version_id}: {rows_in} in != {accepted} accepted + {summary['quarantined']} quarantined"
            )
        vid = datasets.insert_version(
            conn,
            model=spec.name,
            kind="clean",
            digest=digest.hexdigest(),
            parents=[raw_version_id],
            row_count=accepted,
            schema={"columns": EVENT_COLUMNS},
            summary=summary,
            batch_id=meta.batch_id,
        )
        stage.publish(conn, vid, spec.name, raw_version_id)
        audit.append(
            conn,
            actor=actor,
            event_type="clean",
            model=spec.name,
            entity={"raw_version_id": raw_version_id, "clean_version_id": vid, "batch_id": meta.batch_id},
            details=summary,
        )
    log.info(
        "cleaned %s -> %s: %d accepted, %d quarantined %s",
        raw_version_id,
        vid,
        accepted,
        summary["quarantined"],
        summary["reasons"],
    )
    return CleanOutcome(raw_version_id, vid, rows_in, accepted, summary["quarantined"], summary["reasons"])


def clean_pending(engine: Engine, spec: ModelSpec, actor: str = "airflow") -> CleanResult:
    """Every raw version not cleaned yet, oldest first. One that cannot be cleaned at all is recorded (logged,
    audited as ``clean_failed``, listed in ``failed``) and the ones behind it go on; it stays pending, so it is
    tried again on the next run (e.g. after its file is landed again)."""
    result = CleanResult(spec.name)
    for rv in pending_raw_versions(engine, spec.name):
        try:
            result.versions.append(clean_version(engine, spec, rv, actor))
        except RawVersionUnreadable as exc:
            log.error("cannot clean %s: %s", rv, exc)
            audit.record(
                engine,
                actor=actor,
                event_type="clean_failed",
                model=spec.name,
                entity={"raw_version_id": rv},
                details={"error": str(exc)},
            )
            result.failed.append(CleanFailure(rv, str(exc)))
    return result
