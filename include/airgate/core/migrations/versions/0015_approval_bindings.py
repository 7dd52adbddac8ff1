"""Approval requests are bound, when they open, to their report files' hashes, the champion their evidence was
gated against and the role quorum they need; each decision records the roles its decider held.

A decision used to trust the stored bundle and hash alone, so rewriting both approved anything; report files were
never hashed; a request could be approved after the champion it was gated against changed; and the quorum counted
heads, not roles. ``approval_bindings`` keeps one row per request (``airgate.core.approval_tables``) and
``approval_decisions.roles`` the decider's roles at decision time.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "approval_bindings",
        sa.Column("request_id", sa.String(40), sa.ForeignKey("approval_requests.id"), primary_key=True),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("champion_version", sa.String(32), nullable=True),
        sa.Column("champion_ledger_id", BigId, nullable=True),
        sa.Column("required_roles", sa.JSON(), nullable=False),
        sa.Column("superseded_by", sa.String(40), nullable=True),
    )
    with op.batch_alter_table("approval_decisions") as batch_op:
        batch_op.add_column(sa.Column("roles", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approval_decisions") as batch_op:
        batch_op.drop_column("roles")
    op.drop_table("approval_bindings")
