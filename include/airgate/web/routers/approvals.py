"""Approval requests: the queue, one request with its evidence and report files, and the decision on it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from airgate.governance import promotion
from airgate.web.auth import CurrentActor
from airgate.web.deps import MAX_OFFSET, Warehouse, WritingActor, governed_spec, root_of, stored_file
from airgate.web.errors import errors
from airgate.web.schemas import DecisionIn, DecisionOut

router = APIRouter(prefix="/api", tags=["approvals"], responses=errors(401))


@router.get("/approvals")
def list_approvals(
    actor: CurrentActor,
    engine: Warehouse,
    model: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[dict[str, Any]]:
    """A page of requests, newest first: ``limit`` 1..500, ``offset`` 0..2**63-1 (out of bounds: 422)."""
    return promotion.list_requests(engine, model=model, status=status, limit=limit, offset=offset)


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
    req["identity"] = _identity(engine, req["training_run_id"])
    return req


def _identity(engine: Any, training_run_id: str) -> dict[str, Any] | None:
    """Who started the request's training run ("triggered by", run type, the owner who answers for untriggered
    runs), from the run's identity record; None for a run trained before records existed."""
    from airgate.core.run_identity import load_identity

    ident = load_identity(engine, training_run_id)
    return ident.as_dict() if ident is not None else None


@router.get("/approvals/{request_id}/artifacts/{name}", responses=errors(404, 409))
def approval_artifact(request_id: str, name: str, actor: CurrentActor, engine: Warehouse) -> Any:
    """A report file named by the request's evidence (Pareto plot, drift report, gate report), served only while
    it still hashes as it did when the request opened."""
    from airgate.core.settings import runs_dir
    from airgate.governance import bindings, evidence
    from airgate.web.reports import report_response

    if name not in evidence.ARTIFACT_TYPES:
        raise HTTPException(404, f"no artifact {name!r}; one of {sorted(evidence.ARTIFACT_TYPES)}")
    req = promotion.get_request(engine, request_id)
    facts = bindings.Facts.from_json(req["binding"])
    data = bindings.recorded_report(facts, name)  # 409 when the file no longer matches its hash at open
    if data is not None:
        return report_response(data, evidence.ARTIFACT_TYPES[name])
    path = None if facts.champion_bound else evidence.artifact_paths(req["evidence"], runs_dir()).get(name)
    if path is None:  # a request bound at open serves only the files it recorded
        raise HTTPException(404, f"{name} is not available for {request_id}")
    return stored_file(path, evidence.ARTIFACT_TYPES[name])


@router.get("/data-docs/{model}/{path:path}", responses=errors(404))
def data_docs(model: str, path: str, request: Request, actor: CurrentActor, engine: Warehouse) -> Any:
    """The model's Great Expectations Data Docs site, file by file (nothing outside the site)."""
    from airgate.governance import evidence

    target = evidence.data_docs_file(engine, model, path or "index.html")
    if target is None:
        raise HTTPException(404, f"no Data Docs file {path!r} for {model}")
    return stored_file(target, vendor_root=root_of(request))  # CDN libraries -> vendored copies, sandboxed


@router.post("/approvals/{request_id}/decisions", response_model=DecisionOut, responses=errors(403, 404, 409))
def decide(request_id: str, body: DecisionIn, actor: WritingActor, engine: Warehouse) -> Any:
    """Approve or reject, on the evidence hash you reviewed. Every rule is checked here (and audited if refused);
    an approval that reaches quorum promotes the version and moves the MLflow ``champion`` alias."""
    from airgate.core import audit_anchor, registry
    from airgate.core.settings import mlflow_config

    spec = governed_spec(promotion.get_request(engine, request_id)["model"])
    cfg = mlflow_config()
    out = promotion.decide(
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
    audit_anchor.after_change(engine, cfg)  # committed: anchor the log's new head outside the warehouse
    return out
