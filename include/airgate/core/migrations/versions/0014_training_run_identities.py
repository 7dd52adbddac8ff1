"""Training runs record who started them, once, in the warehouse.

The separation-of-duties rules compared approvers and reviewers against a trainer name handed between the train
DAG's tasks as an XCom, which any op user can rewrite through Airflow's REST API. The train DAG's first task now
writes the run's identity (the dag run's authenticated ``triggering_user_name``, its run type, the spec's owner)
here once; every later task and every rule reads it from this table (``airgate.core.run_identity``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_run_identities",
        sa.Column("training_run_id", sa.String(80), primary_key=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("airflow_run_id", sa.String(250), nullable=False),
        sa.Column("run_type", sa.String(32), nullable=False),
        sa.Column("triggered_by", sa.String(128), nullable=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("labeled_version_id", sa.String(80), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_training_run_identities_model", "training_run_identities", ["model"])


def downgrade() -> None:
    op.drop_index("ix_training_run_identities_model", table_name="training_run_identities")
    op.drop_table("training_run_identities")
