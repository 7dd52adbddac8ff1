"""Approval requests: the queue, one request with its evidence and report files, and the decision on it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from airgate.governance import promotion
from airgate.web.auth import CurrentActor
from airgate.web.deps import Warehouse, WritingActor, governed_spec, stored_file
from airgate.web.errors import errors
from airgate.web.schemas import DecisionIn, DecisionOut

router = APIRouter(prefix="/api", tags=["approvals"], responses=errors(401))


@router.get("/approvals")
def list_approvals(
    actor: CurrentActor,
    engine: Warehouse,
    model: str | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    return promotion.list_requests(engine, model=model, status=status, limit=min(limit, 500), offset=offset)


def _you(refusal: promotion.Refusal | None) -> dict[str, Any]:
    """What the page shows about the caller: the server's own refusal (message), so both always agree."""
    return {"can_decide": refusal is None, "reason": refusal.message if refusal else None}


@router.get("/approvals/{request_id}", responses=errors(404))
def get_approval(request_id: str, actor: CurrentActor, engine: Warehouse) -> Any:
    """The request, its evidence bundle, live context (labels, validation, report links) and whether you may
    decide it (a courtesy for the page: the decision route checks every rule again)."""
    from airgate.core.settings import runs_dir
    from airgate.governance import evidence

    req = promotion.get_request(engine, request_id)
    req["you"] = _you(promotion.may_decide(governed_spec(req["model"]), req, actor))
    req["context"] = evidence.context(engine, req, runs_dir())
    return req


@router.get("/approvals/{request_id}/artifacts/{name}", responses=errors(404))
def approval_artifact(request_id: str, name: str, actor: CurrentActor, engine: Warehouse) -> Any:
    """A report file named by the request's evidence (Pareto plot, drift report, gate report)."""
    from airgate.core.settings import runs_dir
    from airgate.governance import evidence

    if name not in evidence.ARTIFACT_TYPES:
        raise HTTPException(404, f"no artifact {name!r}; one of {sorted(evidence.ARTIFACT_TYPES)}")
    req = promotion.get_request(engine, request_id)
    path = evidence.artifact_paths(req["evidence"], runs_dir()).get(name)
    if path is None:
        raise HTTPException(404, f"{name} is not available for {request_id}")
    return stored_file(path, evidence.ARTIFACT_TYPES[name])


@router.get("/data-docs/{model}/{path:path}", responses=errors(404))
def data_docs(model: str, path: str, actor: CurrentActor, engine: Warehouse) -> Any:
    """The model's Great Expectations Data Docs site, file by file (nothing outside the site)."""
    from airgate.governance import evidence

    target = evidence.data_docs_file(engine, model, path or "index.html")
    if target is None:
        raise HTTPException(404, f"no Data Docs file {path!r} for {model}")
    return stored_file(target)


@router.post("/approvals/{request_id}/decisions", response_model=DecisionOut, responses=errors(403, 404, 409))
def decide(request_id: str, body: DecisionIn, actor: WritingActor, engine: Warehouse) -> Any:
    """Approve or reject, on the evidence hash you reviewed. Every rule is checked here (and audited if refused);
    an approval that reaches quorum promotes the version and moves the MLflow ``champion`` alias."""
    from airgate.core import registry
    from airgate.core.settings import mlflow_config

    spec = governed_spec(promotion.get_request(engine, request_id)["model"])
    cfg = mlflow_config()
    return promotion.decide(
        engine,
        spec,
        request_id,
        actor,
        body.decision,
        body.comment,
        body.evidence_hash,
        move_alias=lambda m, v: registry.set_alias(cfg, m, v),
        restore_alias=lambda m, v: registry.set_alias(cfg, m, v),
    )
