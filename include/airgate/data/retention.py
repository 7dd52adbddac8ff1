"""Retention: raw rows and landing files older than ``spec.privacy.retention_days`` are purged, audited.

What goes: the ``raw_rows`` of every raw version created before ``now - retention_days``, and the landing files
the file ledger names for those versions (same ``batch_id``: the file that was ingested and any later copy of the
same content). What stays: the ``dataset_versions`` row and the ledger rows, with their content hashes, so lineage
from a model back to its raw data still resolves (to "purged on <date>", with the evidence of what it was).

Versions are immutable, so the purge is recorded as one ``retention_purge`` audit event naming the versions, their
row counts and the files removed. Files go first, then the rows and the audit event in one transaction: a purge
killed half-way leaves rows behind, and the next run (idempotent: it only looks at versions that still have rows)
finishes it. A file already gone is not an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine

from airgate.core import audit, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import as_utc, dataset_versions, file_ledger, quarantine, raw_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PurgedVersion:
    version_id: str
    created_at: datetime
    rows: int
    files: tuple[str, ...]  # the landing files removed (as the ledger names them)


@dataclass(frozen=True)
class PurgeResult:
    status: str  # disabled | nothing_to_purge | purged
    cutoff: datetime | None
    versions: tuple[PurgedVersion, ...] = ()

    @property
    def rows(self) -> int:
        return sum(v.rows for v in self.versions)

    @property
    def files(self) -> int:
        return sum(len(v.files) for v in self.versions)


def _expired(engine: Engine, model: str, cutoff: datetime) -> list[tuple[str, datetime, str | None, int]]:
    """Raw versions older than the cutoff that still hold rows: (version, created, batch, rows)."""
    q = (
        select(
            dataset_versions.c.version_id,
            dataset_versions.c.created_at,
            dataset_versions.c.batch_id,
            func.count(raw_rows.c.row_num),
        )
        .join(raw_rows, raw_rows.c.version_id == dataset_versions.c.version_id)
        .where(
            dataset_versions.c.model == model,
            dataset_versions.c.kind == "raw",
            dataset_versions.c.created_at < cutoff,
        )
        .group_by(dataset_versions.c.version_id, dataset_versions.c.created_at, dataset_versions.c.batch_id)
        .order_by(dataset_versions.c.created_at, dataset_versions.c.version_id)
    )
    with engine.connect() as conn:
        return [(v, as_utc(c), b, int(n)) for v, c, b, n in conn.execute(q)]


def _ledger_paths(engine: Engine, model: str, batch_id: str | None) -> list[str]:
    if batch_id is None:
        return []
    q = select(file_ledger.c.path).where(
        file_ledger.c.model == model,
        file_ledger.c.batch_id == batch_id,
        file_ledger.c.status.in_(("ingested", "duplicate")),
    )
    with engine.connect() as conn:
        return sorted({p for (p,) in conn.execute(q)})


def _remove(path: str) -> bool:
    """Remove one landing file through storage (local or object store); False when it is already gone."""
    target = storage.location(path)
    if not target.exists():
        return False
    target.unlink()
    return True


def purge(engine: Engine, spec: ModelSpec, now: datetime, actor: str = "airflow") -> PurgeResult:
    """Purge what ``spec.privacy.retention_days`` no longer allows to be kept (see the module doc)."""
    days = spec.privacy.retention_days
    if days is None:
        return PurgeResult("disabled", None)
    cutoff = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC) - timedelta(days=days)
    expired = _expired(engine, spec.name, cutoff)
    if not expired:
        return PurgeResult("nothing_to_purge", cutoff)
    purged = []
    for vid, created, batch_id, rows in expired:
        files = tuple(p for p in _ledger_paths(engine, spec.name, batch_id) if _remove(p))
        purged.append(PurgedVersion(vid, created, rows, files))
    with engine.begin() as conn:
        ids = [v.version_id for v in purged]
        for i in range(0, len(ids), 500):
            batch = ids[i : i + 500]
            conn.execute(delete(raw_rows).where(raw_rows.c.version_id.in_(batch)))
            # Quarantined rows carry a copy of the raw content: it goes too; the reason and row number stay.
            conn.execute(
                update(quarantine)
                .where(quarantine.c.raw_version_id.in_(batch))
                .values(content={"purged": f"retention_days={days}"})
            )
        audit.append(
            conn,
            actor=actor,
            event_type="retention_purge",
            model=spec.name,
            entity={"raw_version_ids": ids},
            details={
                "retention_days": days,
                "cutoff": cutoff.isoformat(),
                "versions": [
                    {"version_id": v.version_id, "rows": v.rows, "files": list(v.files)} for v in purged
                ],
                "rows": sum(v.rows for v in purged),
                "files": sum(len(v.files) for v in purged),
            },
        )
    log.info("purged %d raw versions of %s older than %s", len(purged), spec.name, cutoff.isoformat())
    return PurgeResult("purged", cutoff, tuple(purged))
