"""SQL sources read a lookback window and drop the keys already delivered; the watermark keeps its type.

``source_keys`` holds the keys each source delivered within its window; ``source_watermarks`` gains the
watermark's type and ``tracked_from`` (the watermark at this upgrade: keys below it were never recorded, so the
first reads after the upgrade do not look back past it).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("source_watermarks") as batch_op:
        batch_op.add_column(sa.Column("watermark_type", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("tracked_from", sa.Text(), nullable=True))
    op.execute("UPDATE source_watermarks SET tracked_from = watermark")
    op.create_table(
        "source_keys",
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("watermark", sa.Text(), nullable=True),
        sa.Column("raw_version_id", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("model", "source", "key"),
    )


def downgrade() -> None:
    op.drop_table("source_keys")
    with op.batch_alter_table("source_watermarks") as batch_op:
        batch_op.drop_column("tracked_from")
        batch_op.drop_column("watermark_type")
