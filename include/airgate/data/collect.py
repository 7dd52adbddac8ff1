"""Collection: landing-zone files become immutable raw dataset versions, each piece of content exactly once.

A file's raw rows, its raw version, its ledger row and its audit event commit in one transaction. The raw version
id is derived from the SHA-256 of the bytes that were parsed (and the reader's settings), so a retry, a re-run, a
byte-identical copy under another name, a parallel worker or a task killed mid-write can neither duplicate nor lose
rows: either the whole batch is there and the ledger says so, or nothing is. A copy is recorded in the ledger as a
duplicate and audited. A file that cannot be read, or not parsed, is recorded as rejected, with the reason, and the
other files go on.

Files are streamed (``airgate.data.readers``): memory follows the chunk size, not the file size, and the file is
hashed as it is parsed, so the ledger names exactly the content that became rows even if a writer rewrote the file
after ``scan`` (the scan's hash is then only the first guess; see ``ingest_file``).

The landing zone is a storage location (``airgate.core.storage.location``: an ObjectStoragePath for ``s3://``,
``gs://``, ``file://`` and the other fsspec schemes; a relative spec path is under ``AIRGATE_STORAGE_URL``), so the
sensor in the triggerer and the ingest on a worker see the same files. A file is named in the ledger as
``storage.as_string`` writes it: its plain path on a local root, its URI otherwise. CSV (plain, .gz, .bz2, .xz) and
Parquet are read.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from airgate.core import audit, datasets, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import bulk_insert, dataset_versions, file_ledger, is_postgres, raw_rows, utcnow
from airgate.data import landing_io, readers
from airgate.data.landing import LandingFile, as_path, new_files, scan
from airgate.data.landing_io import BadFile, HashingReader
from airgate.data.privacy import Pseudonymizer
from airgate.data.readers import MALFORMED, UNDECODABLE

__all__ = [
    "MALFORMED",
    "UNDECODABLE",
    "BadFile",
    "FileOutcome",
    "IngestResult",
    "LandingFile",
    "LandingRound",
    "as_path",
    "new_files",
    "scan",
]

log = logging.getLogger(__name__)
RAW_COLUMNS = ("version_id", "row_num", "content")
MAX_READS = 3  # a file rewritten while being read is read again, this many times in all


@dataclass(frozen=True)
class FileOutcome:
    path: str
    batch_id: str
    status: str  # ingested | rejected | duplicate
    raw_version_id: str | None = None
    rows: int = 0
    error: str | None = None


@dataclass
class IngestResult:
    model: str
    files: list[FileOutcome] = field(default_factory=list)

    @property
    def raw_version_ids(self) -> list[str]:
        return [f.raw_version_id for f in self.files if f.status == "ingested" and f.raw_version_id]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files if f.status == "ingested")


class _Changed(Exception):  # noqa: N818 - control flow, never leaves this module
    """The bytes parsed are not the ones the version id was derived from: the file changed since ``scan``."""

    def __init__(self, sha256: str, size: int) -> None:
        super().__init__(sha256)
        self.sha256, self.size = sha256, size


def _batch_id(sha256: str) -> str:
    return f"batch-{sha256[:16]}"


def _ledger(conn: Any, spec: ModelSpec, f: LandingFile, status: str, error: str | None = None) -> None:
    conn.execute(
        file_ledger.insert().values(
            model=spec.name,
            path=f.path,
            size_bytes=f.size_bytes,
            sha256=f.sha256,
            batch_id=_batch_id(f.sha256),
            status=status,
            error=error,
            ingested_at=utcnow(),
            modified=f.modified,
        )
    )


_EVENT_OF = {"rejected": "ingest_rejected", "duplicate": "duplicate_file"}


def _ledger_event(
    engine: Engine,
    spec: ModelSpec,
    f: LandingFile,
    actor: str,
    status: str,
    error: str,
    details: dict[str, Any],
) -> bool:
    """A file that is not ingested: its ledger row and its audit event in one transaction. False when an earlier
    try already recorded this very (path, content)."""
    try:
        with engine.begin() as conn:
            _ledger(conn, spec, f, status, error)
            audit.append(
                conn,
                actor=actor,
                event_type=_EVENT_OF[status],
                model=spec.name,
                entity={"batch_id": _batch_id(f.sha256), "path": f.path},
                details=details,
            )
    except IntegrityError:
        return False
    return True


def _reject(engine: Engine, spec: ModelSpec, f: LandingFile, actor: str, error: str) -> FileOutcome:
    if not _ledger_event(engine, spec, f, actor, "rejected", error, {"error": error, "sha256": f.sha256}):
        return FileOutcome(f.path, _batch_id(f.sha256), "duplicate")
    log.error("rejected landing file %s: %s", f.path, error)
    return FileOutcome(f.path, _batch_id(f.sha256), "rejected", error=error)


def _ingested_as(engine: Engine, model: str, sha256: str) -> str | None:
    """The path under which this content was ingested, if it was."""
    with engine.connect() as conn:
        return conn.execute(  # type: ignore[no-any-return]
            select(file_ledger.c.path).where(
                file_ledger.c.model == model,
                file_ledger.c.sha256 == sha256,
                file_ledger.c.status == "ingested",
            )
        ).scalar()


def _start_version(conn: Connection, spec: ModelSpec, f: LandingFile, source: readers.Source) -> str:
    """The raw version row, written before its rows (they reference it). Its id comes from the file's hash and the
    reader's settings, known up front; the content hash of the rows and the counts are set by _finish_version."""
    key = datasets.content_hash(
        "raw",
        spec.name,
        [],
        extra={"sha256": f.sha256, "format": source.format, "reader": readers.READER_VERSION},
    )
    return datasets.insert_version(
        conn,
        model=spec.name,
        kind="raw",
        digest=key,
        parents=[],
        row_count=0,
        schema={"columns": source.header},
        batch_id=_batch_id(f.sha256),
        summary={},
    )


def _rows_hash(model: str, sha256: str) -> Any:
    """``datasets.content_hash`` of the raw rows, fed chunk by chunk (so ``datasets.verify`` recomputes it)."""
    h = hashlib.sha256()
    h.update(
        json.dumps({"kind": "raw", "model": model, "extra": {"sha256": sha256}}, sort_keys=True).encode()
    )
    return h


def _finish_version(conn: Connection, vid: str, f: LandingFile, source: readers.Source, digest: str) -> None:
    stats = source.stats
    summary = {
        "path": f.path,
        "sha256": f.sha256,
        "size_bytes": f.size_bytes,
        "format": source.format,
        "rows_added": stats.rows,
        "malformed_rows": stats.malformed_rows,
        "undecodable_rows": stats.undecodable_rows,
    }
    conn.execute(
        update(dataset_versions)
        .where(dataset_versions.c.version_id == vid)
        .values(row_count=stats.rows, summary=summary, content_hash=digest)
    )


def _stream_rows(conn: Connection, spec: ModelSpec, f: LandingFile, source: readers.Source) -> str:
    """Version row, then the raw rows chunk by chunk (bulk path); returns the rows' content hash."""
    vid = _start_version(conn, spec, f, source)
    h = _rows_hash(spec.name, f.sha256)
    # PostgreSQL works in its own process: parse the next chunk meanwhile. SQLite works in ours: no gain there.
    with readers.read_ahead(source.chunks(), depth=1 if is_postgres(conn) else 0) as chunks:
        for chunk in chunks:
            bulk_insert(conn, raw_rows, chunk.tuples(vid), columns=RAW_COLUMNS)
            h.update(chunk.canonical_bytes())
    sha, size = source.finish()
    if sha != f.sha256:
        raise _Changed(sha, size)
    if source.stats.rows == 0:
        raise BadFile("header only, no rows")
    _finish_version(conn, vid, replace(f, size_bytes=size), source, h.hexdigest())
    return vid


def _write(
    engine: Engine, spec: ModelSpec, f: LandingFile, source: readers.Source, actor: str
) -> FileOutcome:
    """Stream the file into one transaction: version row, raw rows, ledger, audit; all or nothing."""
    f = replace(f, sha256=source.known_sha256 or f.sha256)
    original = _ingested_as(engine, spec.name, f.sha256)
    if original is not None:
        return _duplicate(engine, spec, f, actor, original)
    try:
        with engine.begin() as conn:
            vid = _stream_rows(conn, spec, f, source)
            f = replace(f, size_bytes=source.finish()[1])
            _ledger(conn, spec, f, "ingested")
            audit.append(
                conn,
                actor=actor,
                event_type="ingest",
                model=spec.name,
                entity={"batch_id": _batch_id(f.sha256), "raw_version_id": vid, "path": f.path},
                details={"rows": source.stats.rows, "sha256": f.sha256},
            )
    except IntegrityError:
        # Another attempt (a retry, a parallel worker) committed this exact content first.
        original = _ingested_as(engine, spec.name, f.sha256)
        if original is not None and original != f.path:
            return _duplicate(engine, spec, f, actor, original)
        return FileOutcome(f.path, _batch_id(f.sha256), "duplicate")
    log.info("ingested %s as %s (%d rows)", f.path, vid, source.stats.rows)
    return FileOutcome(f.path, _batch_id(f.sha256), "ingested", vid, source.stats.rows)


def _pattern_hint(path: str, rename_to: str | None, pattern: str) -> str:
    """When the fix is a rename that the spec's pattern would then no longer match, say so: the renamed file would
    otherwise never be seen again."""
    if rename_to is None:
        return ""
    name = path.rsplit("/", 1)[-1]
    stem = name.split(".", 1)[0]
    renamed = stem + rename_to
    if fnmatch.fnmatch(renamed, pattern):
        return ""
    return f", and change the spec's source.pattern: '{pattern}' does not match {renamed}"


def _read_once(engine: Engine, spec: ModelSpec, f: LandingFile, location: Any, actor: str) -> FileOutcome:
    """One read of the file; a bad file is rejected under the hash of what was read (the rest is hashed too)."""
    expected = list(spec.data_schema.columns)
    # privacy.pseudonymize: ids become keyed pseudonyms in every chunk, before anything is stored. A missing key is
    # an error naming the connection, raised before the file is opened (never a weak default key).
    pseudo = Pseudonymizer.from_spec(spec) if spec.privacy.pseudonymize else None
    try:
        with landing_io.open_binary(location) as fh:
            raw = HashingReader(fh)
            source: readers.Source | None = None
            try:
                source = readers.open_source(raw, f.path, expected, pseudo)
                return _write(engine, spec, f, source, actor)
            except BadFile as exc:
                sha, size = raw.finish()
                why = str(exc) + _pattern_hint(f.path, exc.rename_to, spec.source.pattern)
                return _reject(engine, spec, replace(f, sha256=sha, size_bytes=size), actor, why)
            finally:
                if isinstance(source, readers.ParquetSource):
                    source.close()
    except FileNotFoundError as exc:
        return _reject(engine, spec, f, actor, f"gone before it could be read: {exc}")
    except OSError as exc:
        return _reject(engine, spec, f, actor, f"cannot read: {exc}")


def ingest_file(
    engine: Engine, spec: ModelSpec, f: LandingFile, actor: str, location: Any = None
) -> FileOutcome:
    """Ingest one landing file exactly once. The version id is derived from ``f.sha256`` (the scan's hash); if the
    bytes parsed hash differently (the file was rewritten since), the transaction is rolled back and the file read
    again under the hash it now has, so what is recorded is always what was read."""
    if f.error is not None:
        return _reject(engine, spec, f, actor, f.error)
    for _ in range(MAX_READS):
        try:
            return _read_once(engine, spec, f, location if location is not None else f.path, actor)
        except _Changed as changed:
            log.warning("%s changed while it was read; reading it again", f.path)
            f = replace(f, sha256=changed.sha256, size_bytes=changed.size)
    return _reject(
        engine,
        spec,
        f,
        actor,
        f"the file changed on each of {MAX_READS} reads: writers must write elsewhere and rename into place",
    )


def _duplicate(engine: Engine, spec: ModelSpec, f: LandingFile, actor: str, original: str) -> FileOutcome:
    why = f"same content as {original}"
    _ledger_event(engine, spec, f, actor, "duplicate", why, {"same_as": original})
    log.warning("skipped %s: %s", f.path, why)
    return FileOutcome(f.path, _batch_id(f.sha256), "duplicate", error=why)


def ingest(engine: Engine, spec: ModelSpec, landing_dir: Any, actor: str = "airflow") -> IngestResult:
    result = IngestResult(spec.name)
    folder = as_path(landing_dir)
    files = new_files(engine, spec.name, folder, spec.source.pattern)
    objects = {storage.as_string(p): p for p in folder.glob(spec.source.pattern)} if files else {}
    for f in files:
        result.files.append(ingest_file(engine, spec, f, actor, location=objects.get(f.path)))
    return result


class SensedFilesMissing(RuntimeError):
    """The sensor saw new files that this worker could not find: the two do not share the landing zone."""


def unaccounted(engine: Engine, model: str, sensed: list[str], result: IngestResult) -> list[str]:
    """Paths the sensor reported that neither this ingest nor the ledger accounts for.

    The sensor runs in the triggerer and the ingest on a worker, possibly on other hosts. If the ingest finds none of
    what the sensor saw, skipping would mark the night green while the files wait forever; they must be the same
    store (``AIRGATE_STORAGE_URL``), and this is how a task notices that they are not.
    """
    handled = {f.path for f in result.files}
    todo = [p for p in sensed if p not in handled]
    if not todo:
        return []
    with engine.connect() as conn:
        known = set(
            conn.execute(
                select(file_ledger.c.path).where(file_ledger.c.model == model, file_ledger.c.path.in_(todo))
            ).scalars()
        )
    return [p for p in todo if p not in known]


@dataclass(frozen=True)
class LandingRound:
    """One collect run over the landing zone: ``ingested``, ``nothing_new``, or ``unreadable`` (the sensor saw
    files this worker cannot read), with the reason in words."""

    action: Literal["ingested", "nothing_new", "unreadable"]
    reason: str
    result: IngestResult

    def summary(self) -> dict[str, Any]:
        """The small JSON the collect DAG hands on (ids and counts)."""
        return {
            "raw_version_ids": self.result.raw_version_ids,
            "rows": self.result.rows,
            "files": [f.__dict__ for f in self.result.files],
        }


def ingest_sensed(
    engine: Engine, spec: ModelSpec, landing_dir: Any, sensed: list[str], actor: str = "airflow"
) -> LandingRound:
    """Ingest what is new, and check it against what the sensor saw (``unaccounted``): files the sensor saw but
    this worker cannot read fail the run, since skipping would leave them waiting forever behind a green night."""
    result = ingest(engine, spec, landing_dir, actor=actor)
    missing = unaccounted(engine, spec.name, sensed, result)
    if missing:
        return LandingRound(
            "unreadable",
            f"the sensor saw {missing} in {spec.source.path} but this worker cannot "
            "read them: the triggerer and every worker must reach the same landing zone (set "
            "AIRGATE_STORAGE_URL to a shared store)",
            result,
        )
    if not result.raw_version_ids:
        return LandingRound(
            "nothing_new", f"no new batch ingested: {[f.__dict__ for f in result.files]}", result
        )
    return LandingRound("ingested", "", result)
