"""The warehouse: every airgate table, the engine, and the bulk read/write paths.

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

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.engine import Connection

metadata = MetaData()


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


def _ts(name: str, **kw: Any) -> Column[Any]:
    return Column(name, DateTime(timezone=True), **kw)


BigId = BigInteger().with_variant(Integer(), "sqlite")

file_ledger = Table(
    "file_ledger", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("path", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("batch_id", String(80), nullable=False),
    Column("status", String(16), nullable=False),  # ingested | rejected | duplicate
    Column("error", Text),
    _ts("ingested_at", nullable=False),
    # One row per (file name, content). Exactly-once of the *content* is the raw version's content-addressed id.
    UniqueConstraint("model", "path", "sha256", name="uq_file_ledger_model_path_sha256"),
    Index("ix_file_ledger_model_sha256", "model", "sha256"),
)

dataset_versions = Table(
    "dataset_versions", metadata,
    Column("version_id", String(80), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # raw | clean | labeled
    Column("content_hash", String(64), nullable=False),
    Column("parents", JSON, nullable=False),
    Column("batch_id", String(80)),
    Column("row_count", Integer, nullable=False),
    Column("schema", JSON, nullable=False),
    Column("summary", JSON, nullable=False),
    _ts("created_at", nullable=False),
    Index("ix_dataset_versions_model_kind", "model", "kind"),
)

# Which version of each kind is "current" for a model. New versions move it forward; a rollback moves it back.
current_versions = Table(
    "current_versions", metadata,
    Column("model", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("version_id", String(80), ForeignKey("dataset_versions.version_id"), nullable=False),
    Column("moved_by", String(128), nullable=False),
    Column("reason", Text),
    _ts("moved_at", nullable=False),
)

# Great Expectations results per clean version: pass | warn | fail, with the evidence kept next to the version.
data_validations = Table(
    "data_validations", metadata,
    Column("version_id", String(80), ForeignKey("dataset_versions.version_id"), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("status", String(8), nullable=False),
    Column("critical", JSON, nullable=False),
    Column("warnings", JSON, nullable=False),
    Column("checks", JSON, nullable=False),
    Column("results_path", Text, nullable=False),
    Column("docs_path", Text),
    _ts("evaluated_at", nullable=False),
)

# How far each SQL source has been read: advanced in the same transaction as the raw version it produced.
source_watermarks = Table(
    "source_watermarks", metadata,
    Column("model", String(64), primary_key=True),
    Column("source", String(256), primary_key=True),
    Column("watermark", Text, nullable=False),
    Column("raw_version_id", String(80), nullable=False),
    _ts("updated_at", nullable=False),
)

raw_rows = Table(
    "raw_rows", metadata,
    Column("version_id", String(80), ForeignKey("dataset_versions.version_id"), primary_key=True),
    Column("row_num", Integer, primary_key=True),
    Column("content", JSON, nullable=False),  # the row exactly as it arrived, all strings
)

clean_events = Table(
    "clean_events", metadata,
    Column("version_id", String(80), ForeignKey("dataset_versions.version_id"), nullable=False),
    Column("model", String(64), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("student_id", String(128), nullable=False),
    Column("item_id", String(128), nullable=False),
    Column("skill_id", String(128), nullable=False),
    _ts("ts", nullable=False),
    Column("response_time_ms", Integer, nullable=False),
    Column("answer", Text),
    Column("correct", Integer),
    UniqueConstraint("model", "event_id", name="uq_clean_events_model_event"),
    Index("ix_clean_events_version", "version_id"),
)

quarantine = Table(
    "quarantine", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("version_id", String(80), nullable=False),  # the clean version whose run rejected it
    Column("raw_version_id", String(80), nullable=False),
    Column("row_num", Integer, nullable=False),
    Column("reason", String(48), nullable=False),
    Column("detail", Text),
    Column("content", JSON, nullable=False),
    Index("ix_quarantine_version", "version_id"),
)

labels = Table(
    "labels", metadata,
    Column("version_id", String(80), ForeignKey("dataset_versions.version_id"), primary_key=True),
    Column("event_id", String(128), primary_key=True),
    Column("label", Integer, nullable=False),
    Column("source", String(24), nullable=False),  # ground_truth | late | human | auto
    Column("labeler", String(128)),  # the grader, the reviewer's tool, or the model version for auto-labels
    Column("confidence", Float),
    _ts("labeled_at"),  # when the label was observed (migration 0004)
    Column("person", String(128)),  # the human who gave it, for human labels (migration 0004)
)

# Labels that arrive outside the interaction data: late grades, human review answers. Append-only; one per
# (event, source), so a file dropped twice or an answer re-sent cannot count twice.
label_events = Table(
    "label_events", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("label", Integer, nullable=False),
    Column("source", String(24), nullable=False),  # late | human
    Column("labeler", String(128), nullable=False),
    Column("person", String(128)),
    Column("origin", Text, nullable=False),  # the file or API call it came from
    _ts("observed_at", nullable=False),
    UniqueConstraint("model", "event_id", "source", name="uq_label_events_event_source"),
)

# The rows people are asked to label: the most uncertain unlabeled rows under the current champion.
review_queue = Table(
    "review_queue", metadata,
    Column("model", String(64), primary_key=True),
    Column("event_id", String(128), primary_key=True),
    Column("p", Float, nullable=False),
    Column("uncertainty", Float, nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("labeled_version_id", String(80), nullable=False),
    Column("status", String(16), nullable=False),  # open | answered
    _ts("queued_at", nullable=False),
    _ts("answered_at"),
)

model_candidates = Table(
    "model_candidates", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("training_run_id", String(80), nullable=False, unique=True),
    Column("data_version", String(80), nullable=False),
    Column("mlflow_run_id", String(64)),
    Column("model_version", String(32)),
    Column("trained_by", String(128), nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("gate_report", JSON),
    Column("evidence_hash", String(64)),
    Column("status", String(24), nullable=False),  # trained | gates_passed | gates_failed | registered
    _ts("created_at", nullable=False),
    Column("code_version", String(64)),  # git commit of the code that trained it (migration 0002)
)

# The test split of a training run is read once, by the final evaluation; a second read is refused (migration 0008).
test_set_reads = Table(
    "test_set_reads", metadata,
    Column("training_run_id", String(80), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("split_hash", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("reader", String(128), nullable=False),
    _ts("read_at", nullable=False),
)

monitoring_reports = Table(
    "monitoring_reports", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("scoring_run_id", String(80), nullable=False),
    Column("kind", String(16), nullable=False),  # drift | decay
    Column("model_version", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # ok | alarm | not_evaluated
    Column("value", Float),
    Column("threshold", Float, nullable=False),
    Column("summary", JSON, nullable=False),
    Column("report_path", Text),
    _ts("created_at", nullable=False),
    UniqueConstraint("scoring_run_id", "kind", name="uq_monitoring_run_kind"),
    Index("ix_monitoring_model", "model", "id"),
)

approval_requests = Table(
    "approval_requests", metadata,
    Column("id", String(40), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("training_run_id", String(80), nullable=False),
    Column("evidence_hash", String(64), nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("requested_by", String(128), nullable=False),
    Column("owner", String(128), nullable=False),
    Column("quorum", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # pending | approved | rejected | expired
    _ts("created_at", nullable=False),
    _ts("expires_at", nullable=False),
    _ts("decided_at"),
    UniqueConstraint("model", "model_version", name="uq_approval_model_version"),
)

approval_decisions = Table(
    "approval_decisions", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("request_id", String(40), ForeignKey("approval_requests.id"), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("decision", String(16), nullable=False),  # approve | reject
    Column("comment", Text, nullable=False),
    Column("evidence_hash", String(64), nullable=False),
    _ts("decided_at", nullable=False),
    UniqueConstraint("request_id", "actor", name="uq_decision_request_actor"),
)

promotion_ledger = Table(
    "promotion_ledger", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # promote | rollback | revoke
    Column("from_version", String(32)),
    Column("to_version", String(32)),
    Column("approval_id", String(40)),
    Column("actor", String(128), nullable=False),
    Column("reason", Text),
    _ts("at", nullable=False),
    Index("ix_promotion_ledger_model", "model", "id"),
)

scoring_runs = Table(
    "scoring_runs", metadata,
    Column("run_id", String(80), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("partition_key", String(40), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("approval_id", String(40), nullable=False),
    Column("feature_data_version", String(80), nullable=False),
    Column("rows_scored", Integer),
    # running | succeeded (the partition's published set: at most one per partition) | superseded | abandoned
    Column("status", String(16), nullable=False),
    _ts("started_at", nullable=False),
    _ts("finished_at"),
    Column("airflow_run_id", String(250)),
    Column("shards", Integer),
    Column("rows_expected", Integer),
    Column("reason", Text),
    Index("uq_scoring_runs_published", "model", "partition_key", unique=True,
          sqlite_where=text("status = 'succeeded'"), postgresql_where=text("status = 'succeeded'")),
)

# Written once, straight from the scoring shards; visible as the partition's predictions once its run is published.
predictions = Table(
    "predictions", metadata,
    Column("model", String(64), nullable=False),
    Column("partition_key", String(40), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("student_id", String(128), nullable=False),
    Column("item_id", String(128), nullable=False),
    Column("score", Float, nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("approval_id", String(40), nullable=False),
    Column("scoring_run_id", String(80), nullable=False),
    Column("feature_data_version", String(80), nullable=False),
    Column("shard", Integer, nullable=False, server_default="0"),
    UniqueConstraint("scoring_run_id", "event_id", name="uq_predictions_run_event"),
)


def published_predictions(model: str, partition_key: str | None = None) -> Any:
    """A select of the visible predictions: each partition's rows of its one succeeded (published) run."""
    q = select(predictions).join(scoring_runs, scoring_runs.c.run_id == predictions.c.scoring_run_id).where(
        predictions.c.model == model, scoring_runs.c.status == "succeeded")
    if partition_key is not None:
        q = q.where(predictions.c.partition_key == partition_key)
    return q


audit_log = Table(
    "audit_log", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    _ts("at", nullable=False),
    Column("actor", String(128), nullable=False),
    Column("event_type", String(48), nullable=False),
    Column("model", String(64)),
    Column("entity", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Index("ix_audit_log_model_type", "model", "event_type"),
)


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
            raise ValueError("connection airgate_warehouse (sqlite) needs 'host' set to the database file path")
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


def bulk_insert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]] | Iterable[Mapping[str, Any]],
                columns: Sequence[str] | None = None) -> int:
    """Insert many rows by the fastest path the database has.

    PostgreSQL: COPY through psycopg (an order of magnitude above executemany). SQLite:
    executemany in the caller's transaction, which is already the fast path there.
    """
    rows = rows if isinstance(rows, Sequence) else list(rows)
    if not rows:
        return 0
    cols = list(columns or rows[0].keys())
    if is_postgres(conn):
        return bulk_insert_tuples(conn, table, cols, [tuple(_copy_value(r.get(c)) for c in cols) for r in rows])
    conn.execute(table.insert(), [dict(r) for r in rows])
    return len(rows)


def bulk_insert_tuples(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> int:
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
