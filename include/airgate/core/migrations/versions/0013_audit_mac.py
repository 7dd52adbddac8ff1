"""Audit entries carry a keyed MAC, so the chain cannot be rewritten by whoever can write the warehouse.

The SHA-256 chain alone proves nothing against someone who can write the table: they can edit a row and re-hash
every later one. Each entry now also stores ``mac`` = HMAC-SHA256(audit key, its hash), the key kept outside the
warehouse (``AIRGATE_AUDIT_KEY`` or ``[airgate] audit_key``). Rows written before this revision have none: ``python
-m airgate.cli audit seal`` (run by ``migrate`` when the key is set) MACs them once; until then verify reports them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.add_column(sa.Column("mac", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_column("mac")
