"""The FastAPI dependencies every router shares: who is calling, may they write, and what they act on.

Access checks live here as dependencies so that a route states its guard in its signature (``actor: WritingActor``,
``spec: ReviewableSpec``) instead of repeating it in its body. The governance rules themselves stay in
``airgate.governance``: a dependency only answers "who", never "may this approval go through".
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.engine import Engine

from airgate.core.spec import ModelSpec
from airgate.governance.promotion import Actor
from airgate.web.auth import CurrentActor, bearer_token

DEFAULT_ROOT = "/airgate"
MAX_OFFSET = 2**63 - 1  # the largest offset, keyset position or id a warehouse BIGINT holds: beyond it, 422
CSRF_HEADER = "x-requested-with"
CSRF_VALUE = "airgate"
DEFAULT_REVIEWER_ROLES = {"user", "op", "admin"}


def actor_for_write(request: Request, actor: CurrentActor) -> Actor:
    """The authenticated actor (401 first), then the CSRF check for cookie-authenticated writes (403).

    Only a Bearer token skips the check, because only a Bearer token makes Airflow's ``get_user`` ignore the cookie:
    any other ``Authorization`` header (``Basic x``, an empty ``Bearer``) leaves the ``_token`` cookie as the
    credential, and that ambient cookie is exactly what a cross-site form would ride on."""
    if bearer_token(request):
        return actor  # an explicit Bearer token is not ambient authority: CSRF cannot forge it
    if request.headers.get(CSRF_HEADER, "").lower() != CSRF_VALUE:
        raise HTTPException(403, f"missing CSRF header: send '{CSRF_HEADER}: {CSRF_VALUE}'")
    return actor


WritingActor = Annotated[Actor, Depends(actor_for_write)]


def no_nul_characters(request: Request) -> None:
    """Refuse (422) a path or query parameter holding a NUL character, for every route (an app dependency): no
    name, filter or id has one, PostgreSQL cannot store one and a file name cannot hold one, so past this point it
    could only surface as a 500."""
    where = [("path", "")] if "\x00" in str(request.scope.get("path", "")) else []
    where += [("query", k) for k, v in request.query_params.multi_items() if "\x00" in k or "\x00" in v]
    if where:
        raise RequestValidationError(
            [{"loc": loc, "msg": "NUL characters are not allowed", "type": "string_nul"} for loc in where]
        )


def root_of(request: Request) -> str:
    """Where this app is mounted (``/airgate``, or under the api-server's own base path): the pages build every
    link and API call from it, and Data Docs their vendored libraries' URLs, so they work wherever Airflow serves
    the plugin."""
    return str(request.scope.get("root_path") or DEFAULT_ROOT).rstrip("/") or DEFAULT_ROOT


def warehouse() -> Engine:
    """The warehouse engine, resolved per request from the Airflow connection (as under the api-server)."""
    from airgate.core.settings import warehouse_engine

    return warehouse_engine()


Warehouse = Annotated[Engine, Depends(warehouse)]


def _config_list(key: str) -> list[str]:
    from airflow.configuration import conf

    raw = conf.get("airgate", key, fallback="") or ""
    return [v.strip() for v in raw.split(",") if v.strip()]


def _with_config_approvers(spec: ModelSpec) -> ModelSpec:
    """The spec with approvers granted in Airflow config ([airgate] approver_users / approver_roles)."""
    from airgate.governance import promotion

    return promotion.with_extra_approvers(
        spec, _config_list("approver_users"), _config_list("approver_roles")
    )


def _spec_or_404(model: str) -> ModelSpec:
    """The named spec, or 404. A name that no spec may have (``NAME_RE``: no dot, slash or NUL) is refused before
    it becomes a file name, so ``../..`` cannot make the loader read a file outside the specs folder."""
    from airgate.core.spec import NAME_RE, SpecError, find_spec

    if not re.fullmatch(NAME_RE, model):
        raise HTTPException(404, f"no model spec named {model[:80]!r}")
    try:
        return find_spec(model)
    except SpecError as exc:
        raise HTTPException(404, f"no model spec named {model!r}") from exc


def governed_spec(model: str) -> ModelSpec:
    """The model's spec as governance sees it (config approvers added), or 404."""
    return _with_config_approvers(_spec_or_404(model))


GovernedSpec = Annotated[ModelSpec, Depends(governed_spec)]


def all_specs() -> list[ModelSpec]:
    from airgate.core.spec import load_specs

    return [_with_config_approvers(s) for s in load_specs()]


def may_review(spec: ModelSpec, actor: Actor) -> bool:
    """Who may label: the spec's ``label_policy.reviewers``, or any user/op/admin when the spec names none."""
    rules = spec.label_policy.reviewers
    if rules is None:
        return bool(actor.roles & DEFAULT_REVIEWER_ROLES)
    return actor.username in rules.users or bool(actor.roles & set(rules.roles))


def reviewable_spec(model: str, actor: WritingActor) -> ModelSpec:
    """The spec of a model the caller may label data for: 404 for no such model, 403 for not a reviewer."""
    spec = _spec_or_404(model)
    if not may_review(spec, actor):
        raise HTTPException(403, f"user '{actor.username}' may not label data for {model}")
    return spec


ReviewableSpec = Annotated[ModelSpec, Depends(reviewable_spec)]


def stored_file(path: Any, media_type: str | None = None, *, vendor_root: str | None = None) -> Response:
    """A report file from storage (``AIRGATE_STORAGE_URL``): the api-server shares no disk with the workers.
    Reports are small (a page, a plot), so they are read whole; the type is guessed from the name when not given.
    Every report is served sandboxed (``airgate.web.reports``); pass ``vendor_root`` for a Data Docs file, whose
    CDN libraries are then pointed at the vendored copies."""
    import mimetypes

    from airgate.core import storage
    from airgate.web.reports import report_response

    kind = media_type or mimetypes.guess_type(storage.location(path).name)[0] or "application/octet-stream"
    return report_response(storage.read_bytes(path, what="a report file"), kind, vendor_root=vendor_root)
