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

from sqlalchemy import select, true, update
from sqlalchemy.engine import Connection, Engine

from airgate.core.warehouse import current_versions, dataset_versions, utcnow


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
    return DatasetVersion(
        r.version_id,
        r.model,
        r.kind,
        r.content_hash,
        list(r.parents),
        r.row_count,
        r.batch_id,
        dict(r.summary),
    )


def insert_version(
    conn: Connection,
    *,
    model: str,
    kind: str,
    digest: str,
    parents: list[str],
    row_count: int,
    schema: dict[str, Any],
    summary: dict[str, Any],
    batch_id: str | None = None,
) -> str:
    vid = version_id(kind, digest)
    conn.execute(
        dataset_versions.insert().values(
            version_id=vid,
            model=model,
            kind=kind,
            content_hash=digest,
            parents=parents,
            batch_id=batch_id,
            row_count=row_count,
            schema=schema,
            summary=summary,
            created_at=utcnow(),
        )
    )
    return vid


def get(engine: Engine | Connection, vid: str) -> DatasetVersion | None:
    q = select(dataset_versions).where(dataset_versions.c.version_id == vid)
    if isinstance(engine, Connection):
        r = engine.execute(q).first()
    else:
        with engine.connect() as conn:
            r = conn.execute(q).first()
    return _to_version(r) if r else None


def latest(engine: Engine, model: str, kind: str, with_rows: bool = False) -> DatasetVersion | None:
    """The newest version of ``kind``; with ``with_rows``, the newest that holds rows (a batch whose rows were all
    quarantined is a valid, empty clean version, and there is nothing in it to score)."""
    q = (
        select(dataset_versions)
        .where(dataset_versions.c.model == model, dataset_versions.c.kind == kind)
        .where(dataset_versions.c.row_count > 0 if with_rows else true())
        .order_by(dataset_versions.c.created_at.desc(), dataset_versions.c.version_id.desc())
        .limit(1)
    )
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


# ----------------------------------------------------------------------------------------- current, rollback


def current(engine: Engine, model: str, kind: str) -> DatasetVersion | None:
    """The version runs use by default: the pointer if one was set, else the newest version."""
    with engine.connect() as conn:
        vid = conn.execute(
            select(current_versions.c.version_id).where(
                current_versions.c.model == model, current_versions.c.kind == kind
            )
        ).scalar()
    if vid is None:
        return latest(engine, model, kind)
    return get(engine, vid)


def move_current(
    conn: Connection,
    model: str,
    kind: str,
    version_id: str,
    actor: str,
    reason: str | None,
    event_type: str = "dataset_current_moved",
) -> str | None:
    """Point "current" at ``version_id`` inside the caller's transaction; audited. Returns the previous target."""
    from airgate.core import audit

    prev = conn.execute(
        select(current_versions.c.version_id).where(
            current_versions.c.model == model, current_versions.c.kind == kind
        )
    ).scalar()
    if prev is None:
        conn.execute(
            current_versions.insert().values(
                model=model,
                kind=kind,
                version_id=version_id,
                moved_by=actor,
                reason=reason,
                moved_at=utcnow(),
            )
        )
    else:
        conn.execute(
            update(current_versions)
            .where(current_versions.c.model == model, current_versions.c.kind == kind)
            .values(version_id=version_id, moved_by=actor, reason=reason, moved_at=utcnow())
        )
    audit.append(
        conn,
        actor=actor,
        event_type=event_type,
        model=model,
        entity={"kind": kind, "version_id": version_id},
        details={"from": prev, "reason": reason},
    )
    return prev


def rollback(engine: Engine, model: str, kind: str, version_id: str, actor: str, reason: str) -> str | None:
    """Move "current" back to an older version of the same model and kind. A reason is required."""
    if not reason or not reason.strip():
        raise ValueError("a rollback needs a reason")
    target = get(engine, version_id)
    if target is None or target.model != model or target.kind != kind:
        raise ValueError(f"{version_id} is not a {kind} version of {model}")
    with engine.begin() as conn:
        return move_current(
            conn, model, kind, version_id, actor, reason.strip(), event_type="dataset_rollback"
        )


# ----------------------------------------------------------------------------------------- diff, verify


@dataclass(frozen=True)
class DatasetDiff:
    a: str
    b: str
    added: int
    removed: int
    changed: int
    examples: dict[str, list[str]]


def _keyed_rows(engine: Engine, v: DatasetVersion) -> dict[str, Any]:
    from airgate.core.warehouse import clean_events, labels, raw_rows

    with engine.connect() as conn:
        if v.kind == "labeled":
            q = select(labels.c.event_id, labels.c.label, labels.c.source).where(
                labels.c.version_id == v.version_id
            )
            return {r[0]: (r[1], r[2]) for r in conn.execute(q)}
        if v.kind == "clean":
            q = select(clean_events.c.event_id, clean_events.c.correct).where(
                clean_events.c.version_id == v.version_id
            )
            return {r[0]: r[1] for r in conn.execute(q)}
        q = select(raw_rows.c.content).where(raw_rows.c.version_id == v.version_id)
        return {
            str(r[0].get("event_id", i)): json.dumps(r[0], sort_keys=True)
            for i, r in enumerate(conn.execute(q))
        }


def diff(engine: Engine, a: str, b: str) -> DatasetDiff:
    """What changed from version ``a`` to version ``b`` (same kind), keyed by event id."""
    va, vb = get(engine, a), get(engine, b)
    if va is None or vb is None:
        raise ValueError(f"unknown version: {a if va is None else b}")
    if va.kind != vb.kind:
        raise ValueError(f"cannot diff a {va.kind} version with a {vb.kind} version")
    ra, rb = _keyed_rows(engine, va), _keyed_rows(engine, vb)
    added = sorted(set(rb) - set(ra))
    removed = sorted(set(ra) - set(rb))
    changed = sorted(k for k in set(ra) & set(rb) if ra[k] != rb[k])
    return DatasetDiff(
        a,
        b,
        len(added),
        len(removed),
        len(changed),
        {"added": added[:10], "removed": removed[:10], "changed": changed[:10]},
    )


def verify(engine: Engine, version_id: str) -> bool:
    """Recompute a raw or labeled version's content hash from its stored rows: True when nothing was altered."""
    from airgate.core.warehouse import labels, raw_rows

    v = get(engine, version_id)
    if v is None:
        raise ValueError(f"unknown version {version_id}")
    with engine.connect() as conn:
        if v.kind == "raw":
            rows = conn.execute(
                select(raw_rows.c.row_num, raw_rows.c.content)
                .where(raw_rows.c.version_id == version_id)
                .order_by(raw_rows.c.row_num)
            ).all()
            digest = content_hash(
                "raw",
                v.model,
                ((n, sorted(c.items())) for n, c in rows),
                extra={"sha256": v.summary["sha256"]},
            )
        elif v.kind == "labeled":
            label_rows = conn.execute(
                select(labels.c.event_id, labels.c.label, labels.c.source, labels.c.labeler).where(
                    labels.c.version_id == version_id
                )
            ).all()
            canonical = sorted((str(e), int(lab), str(src), str(who)) for e, lab, src, who in label_rows)
            digest = content_hash(
                "labeled", v.model, canonical, extra={"clean_versions": v.summary["clean_versions"]}
            )
        else:
            raise ValueError(
                "clean versions are verified by re-cleaning their raw version (clean.clean_version)"
            )
    return digest == v.content_hash
