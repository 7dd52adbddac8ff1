"""The warehouse: its tables (declared in ``airgate.core.tables``), the engine, and the bulk read/write paths.

One schema serves SQLite (the embedded default) and PostgreSQL (production). The tables are declared here once and
created only by Alembic migrations (``airgate.core.migrations``); a test checks that the two never drift apart.

SQLite transactions start with ``BEGIN IMMEDIATE`` so that two writers serialise on the database lock instead of
both reading a stale "last row" (the audit chain and approval decisions depend on that). On PostgreSQL the same code
takes row or advisory locks explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload
from urllib.parse import quote_plus

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.engine import Connection

from airgate.core.approval_tables import approval_bindings  # noqa: F401 - as above
from airgate.core.rollback_tables import rollback_confirmations, rollback_proposals  # noqa: F401 - as above
from airgate.core.tables import (  # noqa: F401 - the tables are used through this module
    BigId,
    approval_decisions,
    approval_requests,
    audit_log,
    clean_events,
    current_versions,
    data_validations,
    dataset_versions,
    file_ledger,
    label_events,
    labels,
    metadata,
    model_candidates,
    monitoring_reports,
    predictions,
    promotion_ledger,
    published_predictions,
    quarantine,
    raw_rows,
    review_queue,
    scoring_runs,
    source_watermarks,
    test_set_reads,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(dt: datetime) -> datetime: ...
@overload
def as_utc(dt: None) -> None: ...
def as_utc(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes for timezone-aware columns; every value airgate stores is UTC."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# --------------------------------------------------------------------------------------------------- engines


def url_from_connection(
    conn_type: str | None,
    host: str | None = None,
    login: str | None = None,
    password: str | None = None,
    port: int | None = None,
    schema: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Turn the fields of the Airflow connection ``airgate_warehouse`` into a SQLAlchemy URL.

    ``extra.sqlalchemy_url`` wins when set, so any database SQLAlchemy supports can be named directly.
    """
    extra = extra or {}
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    kind = (conn_type or "").lower()
    if kind == "sqlite":
        if not host:
            raise ValueError(
                "connection airgate_warehouse (sqlite) needs 'host' set to the database file path"
            )
        return f"sqlite:///{host}"
    if kind in {"postgres", "postgresql"}:
        auth = quote_plus(login or "postgres")
        if password:
            auth += ":" + quote_plus(password)
        return f"postgresql+psycopg://{auth}@{host or '127.0.0.1'}:{port or 5432}/{schema or 'postgres'}"
    raise ValueError(
        f"connection airgate_warehouse has conn_type '{conn_type}'; use 'sqlite' or 'postgres', "
        "or set extra.sqlalchemy_url"
    )


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})
        sqlite_write_locking(engine, pragmas=("PRAGMA journal_mode=WAL", "PRAGMA foreign_keys=ON"))
        return engine
    return create_engine(url, pool_pre_ping=True)


def sqlite_write_locking(engine: Engine, pragmas: Sequence[str] = ()) -> None:
    """Every transaction on this SQLite engine starts with BEGIN IMMEDIATE: two writers serialise on the database
    lock instead of both reading a stale state (SQLite ignores SELECT ... FOR UPDATE). Also used for Optuna's own
    engine. Connections already pooled would miss the hooks, so the pool is emptied."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN itself
        cur = dbapi_conn.cursor()
        for pragma in pragmas:
            cur.execute(pragma)
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()


def is_postgres(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "postgresql"


def lock_for_chain(conn: Connection, name: str) -> None:
    """Serialise writers of one logical chain (the audit log, one approval request) inside a transaction.

    SQLite already holds the database write lock from BEGIN IMMEDIATE. PostgreSQL takes a transaction-scoped
    advisory lock keyed by the name.
    """
    if is_postgres(conn):
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%(n)s))", {"n": name})


# --------------------------------------------------------------------------------------------------- bulk paths


def _copy_value(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return v


def bulk_insert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]] | Iterable[Mapping[str, Any]] | Sequence[tuple[Any, ...]],
    columns: Sequence[str] | None = None,
) -> int:
    """Insert many rows by the fastest path the database has.

    PostgreSQL: COPY through psycopg (an order of magnitude above executemany). SQLite:
    executemany in the caller's transaction, which is already the fast path there. Rows may also be tuples laid
    out as ``columns`` (values already in their stored form, e.g. JSON text): they go to ``bulk_insert_tuples``.
    """
    rows = rows if isinstance(rows, Sequence) else list(rows)
    if not rows:
        return 0
    if isinstance(rows[0], tuple):
        if columns is None:
            raise ValueError(
                f"bulk_insert into {table.name}: tuple rows need their column names (columns=...)"
            )
        return bulk_insert_tuples(conn, table, columns, rows)  # type: ignore[arg-type]
    maps: Sequence[Mapping[str, Any]] = rows  # type: ignore[assignment]
    cols = list(columns or maps[0].keys())
    if is_postgres(conn):
        return bulk_insert_tuples(
            conn, table, cols, [tuple(_copy_value(r.get(c)) for c in cols) for r in maps]
        )
    conn.execute(table.insert(), [dict(r) for r in maps])
    return len(maps)


def bulk_insert_tuples(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> int:
    """Like bulk_insert, for rows already laid out as tuples (the scoring hot path: no dict per row)."""
    if not rows:
        return 0
    if is_postgres(conn):
        dbapi = conn.connection.driver_connection
        quoted = ", ".join(f'"{c}"' for c in columns)
        with dbapi.cursor() as cur, cur.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as cp:  # type: ignore[union-attr]
            for r in rows:
                cp.write_row(r)
        return len(rows)
    placeholders = ", ".join("?" for _ in columns)
    quoted = ", ".join(f'"{c}"' for c in columns)
    dbapi = conn.connection.driver_connection
    dbapi.executemany(f'INSERT INTO "{table.name}" ({quoted}) VALUES ({placeholders})', rows)  # type: ignore[union-attr]  # noqa: S608
    return len(rows)


def bulk_read_tuples(conn: Connection, query: Any) -> tuple[list[str], list[tuple[Any, ...]] | bytes]:
    """Rows of a Core select by the fastest path the database has, for the large reads (history, features).

    PostgreSQL: ``COPY (query) TO STDOUT`` as CSV, returned as bytes for a CSV reader (several times faster than
    fetching rows). SQLite: the driver's own tuples, skipping SQLAlchemy's per-value result processing (e.g.
    parsing every timestamp in Python). Values come back as the driver has them: the caller types the columns.
    """
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    columns = [c.name for c in query.selected_columns]
    dbapi = conn.connection.driver_connection
    if is_postgres(conn):
        buf = bytearray()
        with dbapi.cursor() as cur, cur.copy(f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv)") as cp:  # type: ignore[union-attr]
            for block in cp:
                buf += block
        return columns, bytes(buf)
    cur = dbapi.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(str(compiled))
        return columns, cur.fetchall()
    finally:
        cur.close()
