"""Refusals as HTTP: every refusal answers one body, ``{"detail", "code"}`` (``ErrorBody``), and the OpenAPI names
the error responses each route can give.

The rules raise ``GovernanceError`` (``airgate.governance.promotion``) with the status to answer; mapping it here,
once, keeps every route free of try/except and makes every refusal look the same to a client. The framework's own
refusals (401/403 from authentication, 404/405 from routing, 422 from validation) get the same shape, and a refused
write is audited on the way out (``airgate.web.refusals``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from airgate.governance.promotion import GovernanceError
from airgate.web import refusals


class FieldError(BaseModel):
    """One failed input of a 422: where (``["query", "limit"]``), what (pydantic's message and type). Never the
    value sent: a refused body stays out of responses and of the audit log."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """A refusal. ``code`` names the rule (``invalid_request`` for a 422 of validation); framework errors (401,
    CSRF, routing) carry none. ``errors`` lists the failed inputs of a validation 422."""

    detail: str
    code: str | None = None
    errors: list[FieldError] | None = None


WHY = {
    401: "Not signed in to Airflow (no Bearer token or UI session cookie).",
    403: "Signed in, but not allowed: a role or separation-of-duties rule, an invalid token, or a cookie write "
    "without the CSRF header.",
    404: "No such request, model, report file or lineage node.",
    409: "The request's state forbids it: not pending, expired, evidence changed, already decided.",
    422: "A parameter or body field is missing, malformed or out of bounds (``errors`` says which).",
}
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
WRITES = {"post", "put", "patch", "delete"}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry documenting these error statuses in the OpenAPI."""
    return {s: {"model": ErrorBody, "description": WHY[s]} for s in statuses}


async def governance_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GovernanceError)
    if exc.code == "not_found":  # a lookup before the rules; the rules audit their own refusals
        await refusals.audit_refusal(request, exc.status, exc.message)
    return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=exc.status)


async def http_error(request: Request, exc: Exception) -> Response:
    """Authentication, CSRF, routing (404, 405) and route-raised refusals, in the ``ErrorBody`` shape."""
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    await refusals.audit_refusal(request, exc.status_code, detail)
    headers = getattr(exc, "headers", None)
    if exc.status_code < 200 or exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    return JSONResponse({"detail": detail, "code": None}, status_code=exc.status_code, headers=headers)


def field_errors(exc: RequestValidationError) -> list[FieldError]:
    return [
        FieldError(
            loc=[p if isinstance(p, int) else str(p) for p in e.get("loc", ())], msg=e["msg"], type=e["type"]
        )
        for e in exc.errors()
    ]


async def validation_error(request: Request, exc: Exception) -> Response:
    """A 422 that names each failed input without echoing what was sent (pydantic's ``input``/``ctx`` dropped)."""
    assert isinstance(exc, RequestValidationError)
    found = field_errors(exc)
    where = ["{}: {}".format(".".join(str(p) for p in f.loc), f.msg) for f in found]
    await refusals.audit_refusal(
        request, 422, "; ".join(".".join(map(str, f.loc)) + f" ({f.type})" for f in found)
    )
    body = ErrorBody(detail="; ".join(where) or "invalid request", code="invalid_request", errors=found)
    return JSONResponse(body.model_dump(), status_code=422)


def _statuses(method: str, op: dict[str, Any]) -> set[int]:
    """What an operation can refuse with, read off its own OpenAPI: authenticated -> 401 and 403 (an invalid
    token), a write -> 403 (CSRF), a path parameter -> 404, any parameter or body -> 422."""
    out = {int(s) for s in op.get("responses", {}) if s.isdigit() and int(s) >= 400}
    params = op.get("parameters", [])
    if op.get("security"):
        out |= {401, 403}
    if method in WRITES:
        out.add(403)
    if any(p.get("in") == "path" for p in params):
        out.add(404)
    if params or op.get("requestBody"):
        out.add(422)
    return out


def documented(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI with every operation's refusals documented as ``ErrorBody`` (FastAPI's own 422 model replaced)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(
        ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}").pop("$defs", {})
    )
    components["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components["ErrorBody"].pop("$defs", None)
    for ops in schema.get("paths", {}).values():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            for status in sorted(_statuses(method, op)):
                entry = responses.setdefault(str(status), {"description": WHY.get(status, "Refused.")})
                entry["content"] = {"application/json": {"schema": dict(ERROR_REF)}}
                if status in WHY and entry.get("description") in (None, "", "Validation Error"):
                    entry["description"] = WHY[status]
    for stale in ("HTTPValidationError", "ValidationError"):
        components.pop(stale, None)
    return schema


def ledger_tampered(request: Request, exc: Exception) -> JSONResponse:
    """A ledger row no audit event vouches for: every page that reads the champion says so, plainly (409)."""
    return JSONResponse({"detail": str(exc), "code": "ledger_tampered"}, status_code=409)


def install(app: FastAPI) -> None:
    from airgate.core.champion import LedgerTampered

    app.add_exception_handler(GovernanceError, governance_error)
    app.add_exception_handler(LedgerTampered, ledger_tampered)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = documented(base())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
