"""Every airgate table, declared once for SQLite (the embedded default) and PostgreSQL (production).

Created only by Alembic migrations (``airgate.core.migrations``); a test checks that the two never drift apart.
Imported through ``airgate.core.warehouse``, which adds the engine and the bulk paths.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    text,
)

metadata = MetaData()


def _ts(name: str, **kw: Any) -> Column[Any]:
    return Column(name, DateTime(timezone=True), **kw)


BigId = BigInteger().with_variant(Integer(), "sqlite")

file_ledger = Table(
    "file_ledger",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("path", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("batch_id", String(80), nullable=False),
    Column("status", String(16), nullable=False),  # ingested | rejected | duplicate
    Column("error", Text),
    _ts("ingested_at", nullable=False),
    Column(
        "modified", Float
    ),  # the file's modification time as listed (migration 0012): the poll's quick check
    # One row per (file name, content). Exactly-once of the *content* is the raw version's content-addressed id.
    UniqueConstraint("model", "path", "sha256", name="uq_file_ledger_model_path_sha256"),
    Index("ix_file_ledger_model_sha256", "model", "sha256"),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
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
    "current_versions",
    metadata,
    Column("model", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("version_id", String(80), ForeignKey("dataset_versions.version_id"), nullable=False),
    Column("moved_by", String(128), nullable=False),
    Column("reason", Text),
    _ts("moved_at", nullable=False),
)

# Great Expectations results per clean version: pass | warn | fail, with the evidence kept next to the version.
data_validations = Table(
    "data_validations",
    metadata,
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
    "source_watermarks",
    metadata,
    Column("model", String(64), primary_key=True),
    Column("source", String(256), primary_key=True),
    Column("watermark", Text, nullable=False),
    Column("raw_version_id", String(80), nullable=False),
    _ts("updated_at", nullable=False),
    # The watermark's type (datetime | date | int | float | decimal | text), so it is decoded to the column's own
    # type; NULL for rows written before migration 0011. ``tracked_from``: keys are known only above this value
    # (the watermark at the upgrade to 0011), so the lookback never re-reads rows whose keys were never recorded.
    Column("watermark_type", String(16)),
    Column("tracked_from", Text),
)

# The keys each SQL source has delivered within its lookback window (migration 0011): a read re-scans the window
# and drops these keys, so late or backdated rows arrive once. Pruned to the window on every read, so it stays small.
source_keys = Table(
    "source_keys",
    metadata,
    Column("model", String(64), primary_key=True),
    Column("source", String(256), primary_key=True),
    Column("key", String(256), primary_key=True),
    Column(
        "watermark", Text
    ),  # the row's watermark as last seen, encoded like source_watermarks; NULL if NULL
    Column("raw_version_id", String(80), nullable=False),
)

raw_rows = Table(
    "raw_rows",
    metadata,
    Column("version_id", String(80), ForeignKey("dataset_versions.version_id"), primary_key=True),
    Column("row_num", Integer, primary_key=True),
    Column("content", JSON, nullable=False),  # the row exactly as it arrived, all strings
)

clean_events = Table(
    "clean_events",
    metadata,
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
    "quarantine",
    metadata,
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
    "labels",
    metadata,
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
    "label_events",
    metadata,
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
    "review_queue",
    metadata,
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
    "model_candidates",
    metadata,
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
    "test_set_reads",
    metadata,
    Column("training_run_id", String(80), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("split_hash", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("reader", String(128), nullable=False),
    _ts("read_at", nullable=False),
)

monitoring_reports = Table(
    "monitoring_reports",
    metadata,
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
    "approval_requests",
    metadata,
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
    "approval_decisions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("request_id", String(40), ForeignKey("approval_requests.id"), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("decision", String(16), nullable=False),  # approve | reject
    Column("comment", Text, nullable=False),
    Column("evidence_hash", String(64), nullable=False),
    _ts("decided_at", nullable=False),
    UniqueConstraint("request_id", "actor", name="uq_decision_request_actor"),
    Column("roles", JSON),  # the decider's roles at decision time (migration 0015)
)

promotion_ledger = Table(
    "promotion_ledger",
    metadata,
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
    "scoring_runs",
    metadata,
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
    Index(
        "uq_scoring_runs_published",
        "model",
        "partition_key",
        unique=True,
        sqlite_where=text("status = 'succeeded'"),
        postgresql_where=text("status = 'succeeded'"),
    ),
)

# Written once, straight from the scoring shards; visible as the partition's predictions once its run is published.
predictions = Table(
    "predictions",
    metadata,
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
    q = (
        select(predictions)
        .join(scoring_runs, scoring_runs.c.run_id == predictions.c.scoring_run_id)
        .where(predictions.c.model == model, scoring_runs.c.status == "succeeded")
    )
    if partition_key is not None:
        q = q.where(predictions.c.partition_key == partition_key)
    return q


audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    _ts("at", nullable=False),
    Column("actor", String(128), nullable=False),
    Column("event_type", String(48), nullable=False),
    Column("model", String(64)),
    Column("entity", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("mac", String(64)),  # HMAC-SHA256(audit key, hash); NULL only on rows not yet sealed (0013)
    Index("ix_audit_log_model_type", "model", "event_type"),
)

# Who started each training run, written once by its first task from the run's own context (migration 0014):
# the separation-of-duties rules read it here, never from an XCom (``airgate.core.run_identity``).
training_run_identities = Table(
    "training_run_identities",
    metadata,
    Column("training_run_id", String(80), primary_key=True),
    Column("model", String(64), nullable=False, index=True),
    Column("dag_id", String(250), nullable=False),
    Column("airflow_run_id", String(250), nullable=False),
    Column("run_type", String(32), nullable=False),  # manual | scheduled | asset_triggered | backfill | ...
    Column("triggered_by", String(128)),  # the authenticated user who triggered it; None for scheduler runs
    Column("owner", String(128), nullable=False),
    Column("labeled_version_id", String(80), nullable=False),
    _ts("recorded_at", nullable=False),
)
