"""Collection from SQL sources: incremental by a watermark column, exactly once, behind any Airflow connection.

Each read takes every row whose watermark is above the stored one (no LIMIT, so rows that share a watermark value
are never split across batches) and becomes one immutable raw version. The raw rows, the raw version, the new
watermark and the audit event commit in one transaction: a retry or a task killed mid-write resumes from the last
committed watermark, and two workers that read the same rows produce the same content-addressed version, so the
second one's write is refused instead of duplicating rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import MetaData, Table, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from airgate.core import audit, datasets
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import bulk_insert, raw_rows, source_watermarks, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SqlIngest:
    raw_version_id: str | None
    rows: int
    watermark_from: str | None
    watermark_to: str | None
    status: str  # ingested | nothing_new | duplicate


def _source_table(source: Engine, spec: ModelSpec) -> Table:
    schema, _, name = (spec.source.table or "").rpartition(".")
    return Table(name, MetaData(), autoload_with=source, schema=schema or None)


def _source_key(spec: ModelSpec) -> str:
    return f"{spec.source.conn_id}:{spec.source.table}"


def _as_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, (datetime, date)) else str(value)


def _typed(table: Table, column: str, text: str) -> Any:
    """The stored watermark as a value of the column's own type, so the comparison happens in that type."""
    python_type = table.c[column].type.python_type
    if python_type is datetime:
        return datetime.fromisoformat(text)
    if python_type is date:
        return date.fromisoformat(text)
    return python_type(text)


def current_watermark(engine: Engine, spec: ModelSpec) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            select(source_watermarks.c.watermark).where(
                source_watermarks.c.model == spec.name, source_watermarks.c.source == _source_key(spec)
            )
        ).scalar()


def _new_rows_query(table: Table, spec: ModelSpec, watermark: str | None) -> Any:
    col = table.c[spec.source.watermark_column or ""]
    q = select(table)
    if watermark is not None:
        q = q.where(col > _typed(table, col.name, watermark))
    return q.order_by(col)


def count_new_rows(engine: Engine, source: Engine, spec: ModelSpec) -> int:
    """How many rows are waiting: the sensor waits until this reaches the spec's ``min_new_rows``."""
    table = _source_table(source, spec)
    sub = _new_rows_query(table, spec, current_watermark(engine, spec)).subquery()
    with source.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(sub)).scalar_one())


def ingest_new_rows(engine: Engine, source: Engine, spec: ModelSpec, actor: str = "airflow") -> SqlIngest:
    table = _source_table(source, spec)
    wm_col = spec.source.watermark_column or ""
    start = current_watermark(engine, spec)
    with source.connect() as conn:
        fetched = conn.execute(_new_rows_query(table, spec, start)).mappings().all()
    if not fetched:
        return SqlIngest(None, 0, start, start, "nothing_new")
    rows = [{k: "" if v is None else _as_text(v) for k, v in r.items()} for r in fetched]
    end = _as_text(fetched[-1][wm_col])
    batch_id = f"sql-{datasets.content_hash('batch', spec.name, [(start, end)])[:16]}"
    digest = datasets.content_hash(
        "raw",
        spec.name,
        ((i, sorted(r.items())) for i, r in enumerate(rows)),
        extra={"source": _source_key(spec), "from": start, "to": end},
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
                    "source": _source_key(spec),
                    "watermark_from": start,
                    "watermark_to": end,
                    "rows_added": len(rows),
                },
            )
            bulk_insert(
                conn, raw_rows, [{"version_id": vid, "row_num": i, "content": r} for i, r in enumerate(rows)]
            )
            updated = conn.execute(
                source_watermarks.update()
                .where(
                    source_watermarks.c.model == spec.name,
                    source_watermarks.c.source == _source_key(spec),
                    source_watermarks.c.watermark == start,
                )
                .values(watermark=end, raw_version_id=vid, updated_at=utcnow())
            ).rowcount
            if not updated:
                conn.execute(
                    source_watermarks.insert().values(
                        model=spec.name,
                        source=_source_key(spec),
                        watermark=end,
                        raw_version_id=vid,
                        updated_at=utcnow(),
                    )
                )
            audit.append(
                conn,
                actor=actor,
                event_type="ingest",
                model=spec.name,
                entity={"batch_id": batch_id, "raw_version_id": vid, "source": _source_key(spec)},
                details={"rows": len(rows), "watermark_from": start, "watermark_to": end},
            )
    except IntegrityError:
        return SqlIngest(None, 0, start, end, "duplicate")
    log.info("ingested %d rows from %s (%s, %s] as %s", len(rows), _source_key(spec), start, end, vid)
    return SqlIngest(vid, len(rows), start, end, "ingested")
