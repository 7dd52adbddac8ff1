"""What an approval request is bound to when it opens, beyond its evidence bundle: the report files' hashes, the
champion its evidence was gated against, the role quorum it needs, and the newer request that superseded it.

Declared on the one ``metadata`` of ``airgate.core.tables`` (in a module of its own so that no module grows past
its size limit) and created by migration 0015; imported through ``airgate.core.warehouse``. The same values are
written into the request's ``approval_requested`` audit event, which is the authoritative copy: this row is what
the API lists and queries.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, ForeignKey, String, Table

from airgate.core.tables import BigId, metadata

approval_bindings = Table(
    "approval_bindings",
    metadata,
    Column("request_id", String(40), ForeignKey("approval_requests.id"), primary_key=True),
    Column("artifacts", JSON, nullable=False),  # {name: {"path": ..., "sha256": ...}} of the report files
    Column("champion_version", String(32)),  # the champion when the request opened (None: there was none)
    Column("champion_ledger_id", BigId),  # the ledger row that made it champion
    Column("required_roles", JSON, nullable=False),  # {role: distinct approvers holding it}
    Column("superseded_by", String(40)),  # the newer request of the same model that replaced this one
)
