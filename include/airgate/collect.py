"""Collection: landing-zone files become immutable raw dataset versions, each exactly once.

The file ledger is keyed by (model, sha256 of the bytes). A file's raw rows, its raw version, its ledger row and its
audit event commit in one transaction, so a retry, a re-run, a second copy of the same file or a task killed
mid-write can neither duplicate nor lose rows: either the whole batch is there and the ledger says so, or nothing is.
A file that cannot be read is recorded as rejected, with the reason, and the other files go on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from airgate import audit, datasets
from airgate.spec import ModelSpec
from airgate.warehouse import bulk_insert, file_ledger, raw_rows, utcnow

log = logging.getLogger(__name__)


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scan(landing_dir: Path | str, pattern: str) -> list[LandingFile]:
    """Files in the landing zone, skipping hidden and temporary names (writers rename into place when done)."""
    folder = Path(landing_dir)
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob(pattern)):
        if p.is_file() and not p.name.startswith("."):
            out.append(LandingFile(str(p), p.stat().st_size, _sha256(p)))
    return out


def new_files(engine: Engine, model: str, landing_dir: Path | str, pattern: str) -> list[LandingFile]:
    files = scan(landing_dir, pattern)
    if not files:
        return []
    with engine.connect() as conn:
        seen = set(conn.execute(select(file_ledger.c.sha256).where(file_ledger.c.model == model)).scalars())
    return [f for f in files if f.sha256 not in seen]


def read_rows(path: Path, expected: list[str]) -> list[dict[str, str]]:
    """Parse a CSV landing file into rows of strings; raise BadFile with a reason a person can act on."""
    data = path.read_bytes()
    if not data.strip():
        raise BadFile("empty file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadFile(f"not UTF-8 (byte {exc.start})") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in expected if c not in header]
    if missing:
        raise BadFile(f"missing columns {missing}; found {header}")
    rows = []
    for r in reader:
        rows.append({k: ("" if v is None else str(v)) for k, v in r.items() if k is not None})
    if not rows:
        raise BadFile("header only, no rows")
    return rows


def ingest_file(engine: Engine, spec: ModelSpec, f: LandingFile, actor: str) -> FileOutcome:
    batch_id = f"batch-{f.sha256[:16]}"
    expected = [c for c in spec.data_schema.columns if c != spec.data_schema.label] + [spec.data_schema.label]
    try:
        rows = read_rows(Path(f.path), expected)
    except (BadFile, OSError) as exc:
        try:
            with engine.begin() as conn:
                conn.execute(file_ledger.insert().values(
                    model=spec.name, path=f.path, size_bytes=f.size_bytes, sha256=f.sha256, batch_id=batch_id,
                    status="rejected", error=str(exc), ingested_at=utcnow()))
                audit.append(conn, actor=actor, event_type="ingest_rejected", model=spec.name,
                             entity={"batch_id": batch_id, "path": f.path}, details={"error": str(exc)})
        except IntegrityError:
            return FileOutcome(f.path, batch_id, "duplicate")
        log.error("rejected landing file %s: %s", f.path, exc)
        return FileOutcome(f.path, batch_id, "rejected", error=str(exc))

    digest = datasets.content_hash("raw", spec.name, ((i, sorted(r.items())) for i, r in enumerate(rows)),
                                   extra={"sha256": f.sha256})
    try:
        with engine.begin() as conn:
            vid = datasets.insert_version(
                conn, model=spec.name, kind="raw", digest=digest, parents=[], row_count=len(rows),
                schema={"columns": list(rows[0].keys())}, batch_id=batch_id,
                summary={"path": f.path, "sha256": f.sha256, "size_bytes": f.size_bytes, "rows_added": len(rows)})
            bulk_insert(conn, raw_rows, [{"version_id": vid, "row_num": i, "content": r} for i, r in enumerate(rows)])
            conn.execute(file_ledger.insert().values(
                model=spec.name, path=f.path, size_bytes=f.size_bytes, sha256=f.sha256, batch_id=batch_id,
                status="ingested", ingested_at=utcnow()))
            audit.append(conn, actor=actor, event_type="ingest", model=spec.name,
                         entity={"batch_id": batch_id, "raw_version_id": vid, "path": f.path},
                         details={"rows": len(rows), "sha256": f.sha256})
    except IntegrityError:
        # Another attempt (a retry, a parallel run) committed this exact file first: nothing to do.
        return FileOutcome(f.path, batch_id, "duplicate")
    log.info("ingested %s as %s (%d rows)", f.path, vid, len(rows))
    return FileOutcome(f.path, batch_id, "ingested", vid, len(rows))


def ingest(engine: Engine, spec: ModelSpec, landing_dir: Path | str, actor: str = "airflow") -> IngestResult:
    result = IngestResult(spec.name)
    for f in new_files(engine, spec.name, landing_dir, spec.source.pattern):
        result.files.append(ingest_file(engine, spec, f, actor))
    return result
