"""Immutable, content-addressed dataset versions (raw, clean, labeled) and their lookups.

A version id is derived from the content hash, so the same content always gets the same id and rebuilding a
version from its inputs is checkable. Versions are never updated after they are written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from airgate.warehouse import dataset_versions, utcnow


def content_hash(kind: str, model: str, rows: Iterable[Sequence[Any]], extra: Any = None) -> str:
    """Hash rows in a canonical order; the caller passes rows already sorted by key."""
    h = hashlib.sha256()
    h.update(json.dumps({"kind": kind, "model": model, "extra": extra}, sort_keys=True, default=str).encode())
    for row in rows:
        h.update(json.dumps(list(row), default=str, separators=(",", ":")).encode())
        h.update(b"\n")
    return h.hexdigest()


def version_id(kind: str, digest: str) -> str:
    return f"{kind}-{digest[:16]}"


@dataclass(frozen=True)
class DatasetVersion:
    version_id: str
    model: str
    kind: str
    content_hash: str
    parents: list[str]
    row_count: int
    batch_id: str | None
    summary: dict[str, Any]


def _to_version(r: Any) -> DatasetVersion:
    return DatasetVersion(r.version_id, r.model, r.kind, r.content_hash, list(r.parents), r.row_count,
                          r.batch_id, dict(r.summary))


def insert_version(conn: Connection, *, model: str, kind: str, digest: str, parents: list[str], row_count: int,
                   schema: dict[str, Any], summary: dict[str, Any], batch_id: str | None = None) -> str:
    vid = version_id(kind, digest)
    conn.execute(dataset_versions.insert().values(
        version_id=vid, model=model, kind=kind, content_hash=digest, parents=parents, batch_id=batch_id,
        row_count=row_count, schema=schema, summary=summary, created_at=utcnow(),
    ))
    return vid


def get(engine: Engine | Connection, vid: str) -> DatasetVersion | None:
    q = select(dataset_versions).where(dataset_versions.c.version_id == vid)
    if isinstance(engine, Connection):
        r = engine.execute(q).first()
    else:
        with engine.connect() as conn:
            r = conn.execute(q).first()
    return _to_version(r) if r else None


def latest(engine: Engine, model: str, kind: str) -> DatasetVersion | None:
    q = (select(dataset_versions)
         .where(dataset_versions.c.model == model, dataset_versions.c.kind == kind)
         .order_by(dataset_versions.c.created_at.desc(), dataset_versions.c.version_id.desc()).limit(1))
    with engine.connect() as conn:
        r = conn.execute(q).first()
    return _to_version(r) if r else None


def children_of(engine: Engine, model: str, kind: str, parent: str) -> list[DatasetVersion]:
    """Versions of ``kind`` derived from ``parent`` (parents are a short JSON list, so filter in Python)."""
    q = select(dataset_versions).where(dataset_versions.c.model == model, dataset_versions.c.kind == kind)
    with engine.connect() as conn:
        return [_to_version(r) for r in conn.execute(q) if parent in list(r.parents)]


def list_versions(engine: Engine, model: str, kind: str | None = None) -> list[DatasetVersion]:
    q = select(dataset_versions).where(dataset_versions.c.model == model)
    if kind:
        q = q.where(dataset_versions.c.kind == kind)
    with engine.connect() as conn:
        return [_to_version(r) for r in conn.execute(q.order_by(dataset_versions.c.created_at))]
