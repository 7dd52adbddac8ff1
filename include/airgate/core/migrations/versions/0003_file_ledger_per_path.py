"""File ledger keyed by (model, path, sha256): a byte-identical copy under a new name is recorded as a duplicate.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("file_ledger") as batch_op:
        batch_op.drop_constraint("uq_file_ledger_model_sha256", type_="unique")
        batch_op.create_unique_constraint("uq_file_ledger_model_path_sha256", ["model", "path", "sha256"])
        batch_op.create_index("ix_file_ledger_model_sha256", ["model", "sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("file_ledger") as batch_op:
        batch_op.drop_index("ix_file_ledger_model_sha256")
        batch_op.drop_constraint("uq_file_ledger_model_path_sha256", type_="unique")
        batch_op.create_unique_constraint("uq_file_ledger_model_sha256", ["model", "sha256"])
