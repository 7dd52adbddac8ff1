"""The tables of four-eyes rollback: a proposal to make an earlier approved version champion again, and the
confirmations it collects. Declared on the one ``metadata`` of ``airgate.core.tables`` (in a module of their own so
that no module grows past its size limit) and created by migration 0016; imported through ``airgate.core.warehouse``.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from airgate.core.tables import BigId, _ts, metadata

rollback_proposals = Table(
    "rollback_proposals",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("from_version", String(32)),  # the champion when proposed (None: no champion, after a revocation)
    Column("to_version", String(32), nullable=False),
    Column("approval_id", String(40), nullable=False),  # the target version's own approval
    Column("proposed_by", String(128), nullable=False),
    Column("justification", Text, nullable=False),
    Column("quorum", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # pending | confirmed | expired | superseded
    _ts("created_at", nullable=False),
    _ts("expires_at", nullable=False),
    _ts("decided_at"),
    Column("ledger_id", BigId),  # the ledger row written when it took effect
    Index("ix_rollback_proposals_model", "model", "status"),
)

rollback_confirmations = Table(
    "rollback_confirmations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("proposal_id", String(40), ForeignKey("rollback_proposals.id"), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("comment", Text),
    _ts("confirmed_at", nullable=False),
    UniqueConstraint("proposal_id", "actor", name="uq_rollback_confirmation_actor"),
)
