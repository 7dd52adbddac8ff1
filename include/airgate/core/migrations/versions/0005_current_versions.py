"""The "current" dataset version per model and kind (moved forward by new versions, back by rollbacks).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "current_versions",
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("version_id", sa.String(length=80), nullable=False),
        sa.Column("moved_by", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["dataset_versions.version_id"]),
        sa.PrimaryKeyConstraint("model", "kind"),
    )


def downgrade() -> None:
    op.drop_table("current_versions")
