"""Refusals as HTTP: one handler turns a ``GovernanceError`` into its status and ``{"detail", "code"}`` body, and
the OpenAPI names the error responses each route can give.

The rules raise ``GovernanceError`` (``airgate.governance.promotion``) with the status to answer; mapping it here,
once, keeps every route free of try/except and makes every refusal look the same to a client.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from airgate.governance.promotion import GovernanceError


class ErrorBody(BaseModel):
    """A refusal. ``code`` names the rule for a governance refusal; framework errors (401, CSRF) carry none."""

    detail: str
    code: str | None = None


WHY = {
    401: "Not signed in to Airflow (no Bearer token or UI session cookie).",
    403: "Signed in, but not allowed: a role or separation-of-duties rule, or a cookie write without the CSRF "
    "header.",
    404: "No such request, model, report file or lineage node.",
    409: "The request's state forbids it: not pending, expired, evidence changed, already decided.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry documenting these error statuses in the OpenAPI."""
    return {s: {"model": ErrorBody, "description": WHY[s]} for s in statuses}


def governance_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GovernanceError)
    return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=exc.status)


def install(app: FastAPI) -> None:
    app.add_exception_handler(GovernanceError, governance_error)
