"""The audit log: keyset pages, a streamed export, its event types and the chain-and-anchors check. Anyone
signed in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from airgate.core import audit
from airgate.web.auth import CurrentActor
from airgate.web.deps import MAX_OFFSET, Warehouse
from airgate.web.errors import errors
from airgate.web.schemas import AuditPageOut, ChainCheckOut

router = APIRouter(prefix="/api/audit", tags=["audit"], responses=errors(401))


def audit_filter(
    model: str | None = None,
    version: str | None = None,
    actor_name: Annotated[str | None, Query(alias="actor")] = None,
    event_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> audit.AuditFilter:
    """The filters an auditor narrows by, the same for a page and for an export."""
    return audit.AuditFilter(model, version, actor_name, event_type, since, until)


Filter = Annotated[audit.AuditFilter, Depends(audit_filter)]


@router.get("", response_model=AuditPageOut)
def list_audit(
    actor: CurrentActor,
    flt: Filter,
    engine: Warehouse,
    before: Annotated[int | None, Query(ge=0, le=MAX_OFFSET)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Newest first. Pass ``next_before`` back as ``before`` for the next page. Anyone signed in may audit."""
    got = audit.page(engine, flt, before, limit)
    return {"events": [audit.to_json_record(r) for r in got.events], "next_before": got.next_before}


def _ndjson(rows: Any) -> Iterator[str]:
    for r in rows:
        yield json.dumps(audit.to_json_record(r), default=str) + "\n"


@router.get("/export")
def export_audit(
    actor: CurrentActor,
    flt: Filter,
    engine: Warehouse,
    format: Annotated[str, Query(pattern="^(csv|json)$")] = "csv",
) -> StreamingResponse:
    """Every matching event, oldest first, streamed (CSV cells that look like formulas are neutralised)."""
    rows = audit.iter_filtered(engine, flt)
    headers = {"Content-Disposition": f'attachment; filename="airgate-audit.{format}"'}
    if format == "csv":
        return StreamingResponse(
            audit.to_csv_lines(rows), media_type="text/csv; charset=utf-8", headers=headers
        )
    return StreamingResponse(_ndjson(rows), media_type="application/x-ndjson", headers=headers)


@router.get("/event-types")
def audit_event_types(actor: CurrentActor, engine: Warehouse) -> list[str]:
    return audit.event_types(engine)


def _registry() -> Any:
    """MLflow's config when the plugin has one, so the registry anchor is checked too (None otherwise)."""
    from airgate.core.settings import SettingMissing, mlflow_config

    try:
        return mlflow_config()
    except SettingMissing:
        return None


@router.get("/verify", response_model=ChainCheckOut)
def verify_audit(actor: CurrentActor, engine: Warehouse) -> Any:
    """The whole check: every entry's link, hash and MAC, then the anchors outside the warehouse (storage, the
    MLflow registry). A failure names the first bad seq and why (edited, truncated, unanchored, disagreeing)."""
    from airgate.core import audit_anchor

    return audit_anchor.verify(engine, _registry()).__dict__
