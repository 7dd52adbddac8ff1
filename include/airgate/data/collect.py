"""Collection: landing-zone files become immutable raw dataset versions, each piece of content exactly once.

A file's raw rows, its raw version, its ledger row and its audit event commit in one transaction. The raw version
id is derived from the content (rows and the file's SHA-256), so a retry, a re-run, a byte-identical copy under
another name, a parallel worker or a task killed mid-write can neither duplicate nor lose rows: either the whole
batch is there and the ledger says so, or nothing is. A copy is recorded in the ledger as a duplicate and audited.
A file that cannot be read is recorded as rejected, with the reason, and the other files go on.

The landing zone is a storage location (``airgate.core.storage.location``: an ObjectStoragePath for ``s3://``,
``gs://``, ``file://`` and the other fsspec schemes; a relative spec path is under ``AIRGATE_STORAGE_URL``), so the
sensor in the triggerer and the ingest on a worker see the same files. A file is named in the ledger as
``storage.as_string`` writes it: its plain path on a local root, its URI otherwise. CSV and Parquet are read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from airgate.core import audit, datasets, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import bulk_insert, file_ledger, raw_rows, utcnow

log = logging.getLogger(__name__)
MALFORMED = "_malformed"  # set in a raw row's content when the row did not have the header's shape


@dataclass(frozen=True)
class LandingFile:
    path: str
    size_bytes: int
    sha256: str


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


class BadFile(ValueError):
    pass


def as_path(location: Any) -> Any:
    """The landing location as a storage location (``storage.location``: a spec string, a local Path, or a
    location already)."""
    return storage.location(location)


def _sha256(path: Any) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scan(landing_dir: Any, pattern: str) -> list[LandingFile]:
    """Files in the landing zone, skipping hidden and temporary names (writers rename into place when done)."""
    folder = as_path(landing_dir)
    if not folder.exists() or not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob(pattern), key=str):
        if p.is_file() and not p.name.startswith("."):
            out.append(LandingFile(storage.as_string(p), int(p.stat().st_size), _sha256(p)))
    return out


def new_files(engine: Engine, model: str, landing_dir: Any, pattern: str) -> list[LandingFile]:
    """Files whose (path, content) the ledger has not seen: new files, and changed or copied ones."""
    files = scan(landing_dir, pattern)
    if not files:
        return []
    with engine.connect() as conn:
        seen = {
            (r.path, r.sha256)
            for r in conn.execute(
                select(file_ledger.c.path, file_ledger.c.sha256).where(file_ledger.c.model == model)
            )
        }
    return [f for f in files if (f.path, f.sha256) not in seen]


def _csv_rows(data: bytes, expected: list[str]) -> list[dict[str, str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadFile(f"not UTF-8 (byte {exc.start})") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=MALFORMED)
    header = reader.fieldnames or []
    missing = [c for c in expected if c not in header]
    if missing:
        raise BadFile(f"missing columns {missing}; found {header}")
    rows = []
    try:
        for r in reader:
            row = {k: ("" if v is None else str(v)) for k, v in r.items() if k != MALFORMED}
            if r.get(MALFORMED) is not None:
                row[MALFORMED] = f"{len(header) + len(r[MALFORMED])} fields, header has {len(header)}"
            elif any(v is None for v in r.values()):
                row[MALFORMED] = f"{sum(v is not None for v in r.values())} fields, header has {len(header)}"
            rows.append(row)
    except csv.Error as exc:  # e.g. a quote left open by a truncated write
        raise BadFile(f"unreadable CSV at row {len(rows) + 1}: {exc}") from exc
    return rows


def _parquet_rows(data: bytes, expected: list[str]) -> list[dict[str, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BadFile(f"corrupt Parquet: {exc}") from exc
    missing = [c for c in expected if c not in table.column_names]
    if missing:
        raise BadFile(f"missing columns {missing}; found {table.column_names}")
    out = []
    for r in table.to_pylist():
        out.append(
            {
                k: "" if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v))
                for k, v in r.items()
            }
        )
    return out


def read_rows(path: Any, expected: list[str]) -> list[dict[str, str]]:
    """Parse a landing file into rows of strings; raise BadFile with a reason a person can act on."""
    data = as_path(path).read_bytes()
    if not data.strip():
        raise BadFile("empty file")
    name = str(path).lower()
    rows = _parquet_rows(data, expected) if name.endswith((".parquet", ".pq")) else _csv_rows(data, expected)
    if not rows:
        raise BadFile("header only, no rows")
    return rows


def _ledger(
    conn: Any, spec: ModelSpec, f: LandingFile, batch_id: str, status: str, error: str | None = None
) -> None:
    conn.execute(
        file_ledger.insert().values(
            model=spec.name,
            path=f.path,
            size_bytes=f.size_bytes,
            sha256=f.sha256,
            batch_id=batch_id,
            status=status,
            error=error,
            ingested_at=utcnow(),
        )
    )


def ingest_file(
    engine: Engine, spec: ModelSpec, f: LandingFile, actor: str, location: Any = None
) -> FileOutcome:
    batch_id = f"batch-{f.sha256[:16]}"
    with engine.connect() as conn:
        already = conn.execute(
            select(file_ledger.c.path).where(
                file_ledger.c.model == spec.name,
                file_ledger.c.sha256 == f.sha256,
                file_ledger.c.status == "ingested",
            )
        ).first()
    if already is not None:
        return _duplicate(engine, spec, f, batch_id, actor, already.path)
    expected = list(spec.data_schema.columns)
    try:
        rows = read_rows(location if location is not None else f.path, expected)
    except (BadFile, OSError) as exc:
        try:
            with engine.begin() as conn:
                _ledger(conn, spec, f, batch_id, "rejected", str(exc))
                audit.append(
                    conn,
                    actor=actor,
                    event_type="ingest_rejected",
                    model=spec.name,
                    entity={"batch_id": batch_id, "path": f.path},
                    details={"error": str(exc)},
                )
        except IntegrityError:
            return FileOutcome(f.path, batch_id, "duplicate")
        log.error("rejected landing file %s: %s", f.path, exc)
        return FileOutcome(f.path, batch_id, "rejected", error=str(exc))

    digest = datasets.content_hash(
        "raw", spec.name, ((i, sorted(r.items())) for i, r in enumerate(rows)), extra={"sha256": f.sha256}
    )
    try:
        with engine.begin() as conn:
            vid = datasets.insert_version(
                conn,
                model=spec.name,
                kind="raw",
                digest=digest,
                parents=[],
                row_count=len(rows),
                schema={"columns": list(rows[0].keys())},
                batch_id=batch_id,
                summary={
                    "path": f.path,
                    "sha256": f.sha256,
                    "size_bytes": f.size_bytes,
                    "rows_added": len(rows),
                    "malformed_rows": sum(MALFORMED in r for r in rows),
                },
            )
            bulk_insert(
                conn, raw_rows, [{"version_id": vid, "row_num": i, "content": r} for i, r in enumerate(rows)]
            )
            _ledger(conn, spec, f, batch_id, "ingested")
            audit.append(
                conn,
                actor=actor,
                event_type="ingest",
                model=spec.name,
                entity={"batch_id": batch_id, "raw_version_id": vid, "path": f.path},
                details={"rows": len(rows), "sha256": f.sha256},
            )
    except IntegrityError:
        # Another attempt (a retry, a parallel worker) committed this exact content first.
        return FileOutcome(f.path, batch_id, "duplicate")
    log.info("ingested %s as %s (%d rows)", f.path, vid, len(rows))
    return FileOutcome(f.path, batch_id, "ingested", vid, len(rows))


def _duplicate(
    engine: Engine, spec: ModelSpec, f: LandingFile, batch_id: str, actor: str, original: str
) -> FileOutcome:
    try:
        with engine.begin() as conn:
            _ledger(conn, spec, f, batch_id, "duplicate", f"same content as {original}")
            audit.append(
                conn,
                actor=actor,
                event_type="duplicate_file",
                model=spec.name,
                entity={"batch_id": batch_id, "path": f.path},
                details={"same_as": original},
            )
    except IntegrityError:
        pass  # this very (path, content) was recorded by an earlier attempt
    log.warning("skipped %s: same content as %s", f.path, original)
    return FileOutcome(f.path, batch_id, "duplicate", error=f"same content as {original}")


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
