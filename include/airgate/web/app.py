"""The governance plugin's FastAPI app, mounted by the api-server under ``/airgate``.

Thin on purpose: each route authenticates the Airflow user (Bearer token or the UI's ``_token`` cookie, through
Airflow's own ``get_user`` dependency), then calls ``airgate.governance.promotion``/``airgate.core.audit``. Every rule lives there.
State-changing routes called with the cookie must carry the ``X-Requested-With: airgate`` header, which a
cross-site form cannot send (CSRF).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from airgate.governance.promotion import Actor
from airgate.web.auth import CurrentActor, current_actor

CSRF_HEADER = "x-requested-with"
CSRF_VALUE = "airgate"


class ReviewAnswer(BaseModel):
    event_id: str = Field(min_length=1, max_length=128)
    label: int = Field(ge=0, le=1)


class ReviewAnswersIn(BaseModel):
    answers: list[ReviewAnswer] = Field(min_length=1, max_length=5000)


DEFAULT_REVIEWER_ROLES = {"user", "op", "admin"}


def _may_review(spec: Any, actor: Actor) -> bool:
    rules = spec.label_policy.reviewers
    if rules is None:
        return bool(actor.roles & DEFAULT_REVIEWER_ROLES)
    return actor.username in rules.users or bool(actor.roles & set(rules.roles))


class DecisionIn(BaseModel):
    decision: str = Field(pattern="^(approve|reject)$")
    comment: str = Field(min_length=1, max_length=4000)
    evidence_hash: str = Field(min_length=64, max_length=64)


def actor_for_write(request: Request, actor: CurrentActor) -> Actor:
    """The authenticated actor (401 first), then the CSRF check for cookie-authenticated writes (403)."""
    if request.headers.get("authorization"):
        return actor  # an explicit Bearer token is not ambient authority: CSRF cannot forge it
    if request.headers.get(CSRF_HEADER, "").lower() != CSRF_VALUE:
        raise HTTPException(403, f"missing CSRF header: send '{CSRF_HEADER}: {CSRF_VALUE}'")
    return actor


WritingActor = Annotated[Actor, Depends(actor_for_write)]


def _engine() -> Any:
    from airgate.core.settings import warehouse_engine

    return warehouse_engine()


def _stored_file(path: Any, media_type: str | None = None) -> Response:
    """A report file from storage (``AIRGATE_STORAGE_URL``): the api-server shares no disk with the workers.
    Reports are small (a page, a plot), so they are read whole; the type is guessed from the name when not given."""
    import mimetypes

    from airgate.core import storage

    kind = media_type or mimetypes.guess_type(storage.location(path).name)[0] or "application/octet-stream"
    return Response(storage.read_bytes(path, what="a report file"), media_type=kind)


def _error(exc: Any) -> JSONResponse:
    return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=exc.status)


def _config_list(key: str) -> list[str]:
    from airflow.configuration import conf

    raw = conf.get("airgate", key, fallback="") or ""
    return [v.strip() for v in raw.split(",") if v.strip()]


def _with_config_approvers(spec: Any) -> Any:
    """The spec with approvers granted in Airflow config ([airgate] approver_users / approver_roles)."""
    from airgate.governance import promotion

    return promotion.with_extra_approvers(spec, _config_list("approver_users"), _config_list("approver_roles"))


def governed_spec(model: str) -> Any:
    from airgate.core.spec import SpecError, find_spec

    try:
        return _with_config_approvers(find_spec(model))
    except SpecError as exc:
        raise HTTPException(404, f"no model spec named {model!r}") from exc


def _all_specs() -> list[Any]:
    from airgate.core.spec import load_specs

    return [_with_config_approvers(s) for s in load_specs()]


class RollbackIn(BaseModel):
    to_version: str = Field(min_length=1, max_length=32)
    justification: str = Field(min_length=1, max_length=4000)


class RevokeIn(BaseModel):
    version: str = Field(min_length=1, max_length=32)
    justification: str = Field(min_length=1, max_length=4000)


def create_app() -> FastAPI:
    app = FastAPI(title="airgate governance API", version="1", docs_url="/docs", openapi_url="/openapi.json",
                  description="Approvals, promotion and audit for airgate models. Every page action is a call here.")

    @app.get("/api/approvals", tags=["approvals"])
    def list_approvals(actor: CurrentActor, model: str | None = None, status: str | None = None,
                       limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        from airgate.governance import promotion

        return promotion.list_requests(_engine(), model=model, status=status, limit=min(limit, 500), offset=offset)

    @app.get("/api/approvals/{request_id}", tags=["approvals"])
    def get_approval(request_id: str, actor: CurrentActor) -> Any:
        """The request, its evidence bundle, live context (labels, validation, report links) and whether you may
        decide it (a courtesy for the page: the decision route checks every rule again)."""
        from airgate.core.settings import runs_dir
        from airgate.governance import evidence, promotion

        engine = _engine()
        try:
            req = promotion.get_request(engine, request_id)
        except promotion.GovernanceError as exc:
            return _error(exc)
        reason = promotion.why_not_decide(governed_spec(req["model"]), req, actor)
        req["you"] = {"can_decide": reason is None, "reason": reason}
        req["context"] = evidence.context(engine, req, runs_dir())
        return req

    @app.get("/api/approvals/{request_id}/artifacts/{name}", tags=["approvals"])
    def approval_artifact(request_id: str, name: str, actor: CurrentActor) -> Any:
        """A report file named by the request's evidence (Pareto plot, drift report, gate report)."""
        from airgate.core.settings import runs_dir
        from airgate.governance import evidence, promotion

        if name not in evidence.ARTIFACT_TYPES:
            raise HTTPException(404, f"no artifact {name!r}; one of {sorted(evidence.ARTIFACT_TYPES)}")
        try:
            req = promotion.get_request(_engine(), request_id)
        except promotion.GovernanceError as exc:
            return _error(exc)
        path = evidence.artifact_paths(req["evidence"], runs_dir()).get(name)
        if path is None:
            raise HTTPException(404, f"{name} is not available for {request_id}")
        return _stored_file(path, evidence.ARTIFACT_TYPES[name])

    @app.get("/api/data-docs/{model}/{path:path}", tags=["approvals"])
    def data_docs(model: str, path: str, actor: CurrentActor) -> Any:
        """The model's Great Expectations Data Docs site, file by file (nothing outside the site)."""
        from airgate.governance import evidence

        target = evidence.data_docs_file(_engine(), model, path or "index.html")
        if target is None:
            raise HTTPException(404, f"no Data Docs file {path!r} for {model}")
        return _stored_file(target)

    @app.post("/api/approvals/{request_id}/decisions", tags=["approvals"])
    def decide(request_id: str, body: DecisionIn, actor: WritingActor) -> Any:
        from airgate.core import registry
        from airgate.core.settings import mlflow_config
        from airgate.governance import promotion

        engine = _engine()
        try:
            req = promotion.get_request(engine, request_id)
        except promotion.GovernanceError as exc:
            return _error(exc)
        spec = governed_spec(req["model"])
        cfg = mlflow_config()
        try:
            return promotion.decide(
                engine, spec, request_id, actor, body.decision, body.comment, body.evidence_hash,
                move_alias=lambda m, v: registry.set_alias(cfg, m, v),
                restore_alias=lambda m, v: registry.set_alias(cfg, m, v))
        except promotion.GovernanceError as exc:
            return _error(exc)

    @app.get("/api/models", tags=["models"])
    def list_models(actor: CurrentActor) -> list[dict[str, Any]]:
        from airgate.governance import promotion

        return promotion.models_overview(_engine(), _all_specs())

    @app.get("/api/models/{model}", tags=["models"])
    def get_model(model: str, actor: CurrentActor) -> dict[str, Any]:
        """The promotion ledger (oldest first), every version that asked for approval, and what you may do."""
        from airgate.core.warehouse import utcnow
        from airgate.governance import promotion

        spec = governed_spec(model)
        engine = _engine()
        return {"model": model, "owner": spec.owner, "champion": promotion.champion_as_of(engine, model, utcnow()),
                "ledger": promotion.ledger(engine, model), "versions": promotion.model_versions(engine, model),
                "you": {"can_rollback": promotion.is_approver(spec, actor),
                        "can_revoke": promotion.may_break_glass(spec, actor)}}

    @app.get("/api/models/{model}/ledger", tags=["models"])
    def model_ledger(model: str, actor: CurrentActor) -> list[dict[str, Any]]:
        from airgate.governance import promotion

        return promotion.ledger(_engine(), model)

    @app.post("/api/models/{model}/rollback", tags=["models"])
    def rollback(model: str, body: RollbackIn, actor: WritingActor) -> Any:
        """Make an earlier approved version champion again (approvers; justification required; audited)."""
        from airgate.core import registry
        from airgate.core.settings import mlflow_config
        from airgate.governance import promotion

        cfg = mlflow_config()
        try:
            return promotion.rollback(_engine(), governed_spec(model), actor, body.to_version, body.justification,
                                       move_alias=lambda m, v: registry.set_alias(cfg, m, v))
        except promotion.GovernanceError as exc:
            return _error(exc)

    @app.post("/api/models/{model}/revoke", tags=["models"])
    def revoke(model: str, body: RevokeIn, actor: WritingActor) -> Any:
        """Break-glass: withdraw the champion now; scoring stops until another version is approved or rolled
        back to (spec approval.break_glass only; justification required; audited)."""
        from airgate.core import registry
        from airgate.core.settings import mlflow_config
        from airgate.governance import promotion

        cfg = mlflow_config()
        try:
            return promotion.revoke(_engine(), governed_spec(model), actor, body.version, body.justification,
                                     remove_alias=lambda m: registry.delete_alias(cfg, m))
        except promotion.GovernanceError as exc:
            return _error(exc)

    @app.get("/api/lineage", tags=["lineage"])
    def lineage_graph(actor: CurrentActor, node: str) -> Any:
        """The node, everything upstream of it to the source files, and its direct downstream."""
        from airgate.governance import lineage

        try:
            return lineage.graph(_engine(), node)
        except lineage.LineageError as exc:
            return JSONResponse({"detail": exc.message, "code": "lineage"}, status_code=exc.status)

    @app.get("/api/lineage/as-of", tags=["lineage"])
    def lineage_as_of(actor: CurrentActor, model: str, at: datetime, partition_key: str | None = None) -> Any:
        """Which approved version was champion at ``at``, and which version had produced the partition by then."""
        from airgate.governance import lineage

        return lineage.as_of(_engine(), model, at, partition_key)

    @app.get("/api/reviews/{model}/queue", tags=["labeling"])
    def review_queue(model: str, actor: CurrentActor, limit: int = 100) -> list[dict[str, Any]]:
        """The rows people are asked to label, most uncertain first."""
        from airgate.data import labeling

        return labeling.open_queue(_engine(), model, limit=min(limit, 1000))

    @app.post("/api/reviews/{model}/answers", tags=["labeling"])
    def review_answers(model: str, body: ReviewAnswersIn, actor: WritingActor) -> Any:
        """Answer queued rows; each answer becomes a human label with the caller as the person."""
        from airgate.core.spec import SpecError, find_spec
        from airgate.data import labeling

        try:
            spec = find_spec(model)
        except SpecError as exc:
            raise HTTPException(404, f"no model spec named {model!r}") from exc
        if not _may_review(spec, actor):
            raise HTTPException(403, f"user '{actor.username}' may not label data for {model}")
        try:
            accepted, duplicates = labeling.answer_reviews(
                _engine(), spec, [a.model_dump() for a in body.answers], actor.username,
                origin=f"api:{actor.username}")
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"accepted": accepted, "duplicates": duplicates}

    def _audit_filter(model: str | None, version: str | None, actor_name: str | None, event_type: str | None,
                      since: datetime | None, until: datetime | None) -> Any:
        from airgate.core import audit

        return audit.AuditFilter(model, version, actor_name, event_type, since, until)

    @app.get("/api/audit", tags=["audit"])
    def list_audit(actor: CurrentActor, model: str | None = None, version: str | None = None,
                   actor_name: Annotated[str | None, Query(alias="actor")] = None, event_type: str | None = None,
                   since: datetime | None = None, until: datetime | None = None, before: int | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """Newest first. Pass ``next_before`` back as ``before`` for the next page. Anyone signed in may audit."""
        from airgate.core import audit

        got = audit.page(_engine(), _audit_filter(model, version, actor_name, event_type, since, until), before,
                         limit)
        return {"events": [audit.to_json_record(r) for r in got.events], "next_before": got.next_before}

    @app.get("/api/audit/export", tags=["audit"])
    def export_audit(actor: CurrentActor, format: Annotated[str, Query(pattern="^(csv|json)$")] = "csv",
                     model: str | None = None, version: str | None = None,
                     actor_name: Annotated[str | None, Query(alias="actor")] = None, event_type: str | None = None,
                     since: datetime | None = None, until: datetime | None = None) -> StreamingResponse:
        """Every matching event, oldest first, streamed (CSV cells that look like formulas are neutralised)."""
        import json

        from airgate.core import audit

        rows = audit.iter_filtered(_engine(), _audit_filter(model, version, actor_name, event_type, since, until))
        name = f"airgate-audit.{format}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if format == "csv":
            return StreamingResponse(audit.to_csv_lines(rows), media_type="text/csv; charset=utf-8",
                                     headers=headers)

        def lines() -> Any:
            for r in rows:
                yield json.dumps(audit.to_json_record(r), default=str) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson", headers=headers)

    @app.get("/api/audit/event-types", tags=["audit"])
    def audit_event_types(actor: CurrentActor) -> list[str]:
        from airgate.core import audit

        return audit.event_types(_engine())

    @app.get("/api/audit/verify", tags=["audit"])
    def verify_audit(actor: CurrentActor) -> dict[str, Any]:
        from airgate.core import audit

        return audit.verify_chain(_engine()).__dict__

    @app.get("/api/me", tags=["auth"])
    def me(actor: Annotated[Any, Depends(current_actor)]) -> dict[str, Any]:
        from airgate.governance import promotion

        specs = _all_specs()
        return {"username": actor.username, "roles": sorted(actor.roles),
                "approver_of": [s.name for s in specs if promotion.is_approver(s, actor)],
                "break_glass_of": [s.name for s in specs if promotion.may_break_glass(s, actor)]}

    from airgate.web.views import router as pages

    app.include_router(pages)
    return app


PREFIX = "/airgate"


def mounted_app() -> FastAPI:
    """The plugin app mounted under /airgate in a bare parent, as the api-server mounts it (demo and tests)."""
    parent = FastAPI()
    parent.mount(PREFIX, create_app())
    return parent
