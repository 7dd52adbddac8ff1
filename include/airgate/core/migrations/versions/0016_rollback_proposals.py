"""Four-eyes rollback: a rollback is proposed by one approver and takes effect only when other eligible approvers
(neither the proposer, nor the owner, nor a trainer of either version) confirm it, before it expires.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rollback_proposals",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("from_version", sa.String(length=32), nullable=True),
        sa.Column("to_version", sa.String(length=32), nullable=False),
        sa.Column("approval_id", sa.String(length=40), nullable=False),
        sa.Column("proposed_by", sa.String(length=128), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ledger_id", _BIG_ID, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rollback_proposals_model", "rollback_proposals", ["model", "status"])
    op.create_table(
        "rollback_confirmations",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("proposal_id", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["proposal_id"], ["rollback_proposals.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("proposal_id", "actor", name="uq_rollback_confirmation_actor"),
    )


def downgrade() -> None:
    op.drop_table("rollback_confirmations")
    op.drop_index("ix_rollback_proposals_model", table_name="rollback_proposals")
    op.drop_table("rollback_proposals")
