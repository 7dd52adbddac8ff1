"""Label provenance (time, person), late and human label events, and the review queue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("labels") as batch_op:
        batch_op.add_column(sa.Column("labeled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("person", sa.String(length=128), nullable=True))
    op.create_table(
        "label_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=24), nullable=False),
        sa.Column("labeler", sa.String(length=128), nullable=False),
        sa.Column("person", sa.String(length=128), nullable=True),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model", "event_id", "source", name="uq_label_events_event_source"),
    )
    op.create_table(
        "review_queue",
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("p", sa.Float(), nullable=False),
        sa.Column("uncertainty", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("labeled_version_id", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("model", "event_id"),
    )


def downgrade() -> None:
    op.drop_table("review_queue")
    op.drop_table("label_events")
    with op.batch_alter_table("labels") as batch_op:
        batch_op.drop_column("person")
        batch_op.drop_column("labeled_at")
