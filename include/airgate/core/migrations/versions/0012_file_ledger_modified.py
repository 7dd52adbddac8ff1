"""The file ledger records each file's modification time, so a poll re-hashes only what changed.

A landing file whose (path, size, modification time) is already in the ledger is accounted for without reading it
again (the quick check rsync makes); anything else is hashed. Rows written before this revision have none and are
matched by their content hash, as before.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("file_ledger") as batch_op:
        batch_op.add_column(sa.Column("modified", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("file_ledger") as batch_op:
        batch_op.drop_column("modified")
