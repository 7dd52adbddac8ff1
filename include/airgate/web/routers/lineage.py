"""Lineage: a node's graph both ways, and the auditor's "as of" question."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from airgate.governance import lineage
from airgate.web.auth import CurrentActor
from airgate.web.deps import Warehouse
from airgate.web.errors import errors

router = APIRouter(prefix="/api/lineage", tags=["lineage"], responses=errors(401))


@router.get("", responses=errors(404))
def lineage_graph(actor: CurrentActor, node: str, engine: Warehouse) -> Any:
    """The node, everything upstream of it to the source files, and its direct downstream."""
    return lineage.graph(engine, node)


@router.get("/as-of")
def lineage_as_of(
    actor: CurrentActor, model: str, at: datetime, engine: Warehouse, partition_key: str | None = None
) -> Any:
    """Which approved version was champion at ``at``, and which version had produced the partition by then."""
    return lineage.as_of(engine, model, at, partition_key)
