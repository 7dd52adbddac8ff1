"""Scoring writes each run's rows once and publishes the run: no staging copy, no second write.

Predictions are written straight into ``predictions`` under their scoring run id (and shard, so a retried
partition replaces only its own rows), and a run becomes the partition's visible set when its ``scoring_runs`` row
turns ``succeeded`` in the same transaction that deletes every other run's rows of that partition. At most one
run per (model, partition) is ``succeeded``: a partial unique index says so on both databases.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_PUBLISHED = sa.text("status = 'succeeded'")


def upgrade() -> None:
    # Before the partial unique index: older code left one 'succeeded' run per re-run of a date.
    op.execute("""
        UPDATE scoring_runs SET status = 'superseded'
        WHERE status = 'succeeded' AND EXISTS (
            SELECT 1 FROM scoring_runs newer
            WHERE newer.model = scoring_runs.model AND newer.partition_key = scoring_runs.partition_key
              AND newer.status = 'succeeded'
              AND (newer.finished_at > scoring_runs.finished_at
                   OR (newer.finished_at = scoring_runs.finished_at AND newer.run_id > scoring_runs.run_id)))
    """)
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.add_column(sa.Column("airflow_run_id", sa.String(length=250), nullable=True))
        batch_op.add_column(sa.Column("shards", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rows_expected", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
    op.create_index("uq_scoring_runs_published", "scoring_runs", ["model", "partition_key"], unique=True,
                    sqlite_where=_PUBLISHED, postgresql_where=_PUBLISHED)
    with op.batch_alter_table("predictions") as batch_op:
        batch_op.drop_constraint("uq_predictions_partition_event", type_="unique")
        batch_op.drop_index("ix_predictions_run")
        batch_op.add_column(sa.Column("shard", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_unique_constraint("uq_predictions_run_event", ["scoring_run_id", "event_id"])
    op.drop_index("ix_predictions_staging_run", table_name="predictions_staging")
    op.drop_table("predictions_staging")


def downgrade() -> None:
    cols: list[sa.schema.SchemaItem] = [
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("partition_key", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("student_id", sa.String(length=128), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("approval_id", sa.String(length=40), nullable=False),
        sa.Column("scoring_run_id", sa.String(length=80), nullable=False),
        sa.Column("feature_data_version", sa.String(length=80), nullable=False),
    ]
    op.create_table("predictions_staging", *cols)
    op.create_index("ix_predictions_staging_run", "predictions_staging", ["scoring_run_id"])
    # Only published rows can satisfy the old one-row-per-partition-event constraint.
    op.execute("DELETE FROM predictions WHERE scoring_run_id NOT IN "
               "(SELECT run_id FROM scoring_runs WHERE status = 'succeeded')")
    with op.batch_alter_table("predictions") as batch_op:
        batch_op.drop_constraint("uq_predictions_run_event", type_="unique")
        batch_op.drop_column("shard")
        batch_op.create_index("ix_predictions_run", ["scoring_run_id"])
        batch_op.create_unique_constraint("uq_predictions_partition_event", ["model", "partition_key", "event_id"])
    op.drop_index("uq_scoring_runs_published", table_name="scoring_runs")
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.drop_column("reason")
        batch_op.drop_column("rows_expected")
        batch_op.drop_column("shards")
        batch_op.drop_column("airflow_run_id")
