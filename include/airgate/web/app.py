"""The governance plugin's FastAPI app, mounted by the api-server under ``/airgate``.

Thin on purpose: each router (``airgate.web.routers``, one per resource) authenticates the Airflow user (Bearer
token or the UI's ``_token`` cookie, through Airflow's own ``get_user`` dependency), then calls
``airgate.governance``/``airgate.core.audit``, where every rule lives. A refused action raises ``GovernanceError``,
which one handler (``airgate.web.errors``) turns into its status and body. State-changing routes called with the
cookie must carry the ``X-Requested-With: airgate`` header, which a cross-site form cannot send (CSRF). Every
response carries the security headers of ``airgate.web.headers``; report files are sandboxed (``airgate.web.reports``).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from airgate.web import errors, reports
from airgate.web.deps import CSRF_HEADER, CSRF_VALUE, WritingActor, actor_for_write, no_nul_characters
from airgate.web.headers import SecurityHeaders
from airgate.web.routers import approvals, audit, lineage, me, models, reviews

__all__ = [
    "CSRF_HEADER",
    "CSRF_VALUE",
    "PREFIX",
    "WritingActor",
    "actor_for_write",
    "create_app",
    "mounted_app",
]

PREFIX = "/airgate"
ROUTERS = (
    approvals.router,
    models.router,
    lineage.router,
    reviews.router,
    audit.router,
    me.router,
    reports.router,
)


def create_app() -> FastAPI:
    """The API routers, then the pages; refusals are mapped to HTTP once, by the governance error handler."""
    from airgate.web.views import router as pages

    app = FastAPI(
        title="airgate governance API",
        version="1",
        docs_url="/docs",
        openapi_url="/openapi.json",
        description="Approvals, promotion and audit for airgate models. Every page action is a call here.",
        dependencies=[Depends(no_nul_characters)],
    )
    errors.install(app)
    app.add_middleware(SecurityHeaders)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(pages)
    return app


def mounted_app() -> FastAPI:
    """The plugin app mounted under /airgate in a bare parent, as the api-server mounts it (demo and tests)."""
    parent = FastAPI()
    parent.mount(PREFIX, create_app())
    return parent
