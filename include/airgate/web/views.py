"""The Governance pages: Approvals, Models, Audit and Lineage, opened inside the Airflow UI (external views).

Each page is a small HTML shell; its script (``static/*.js``, inlined) fetches the JSON API with the user's own
Airflow session cookie and builds the DOM with ``textContent`` only, so nothing a user typed (a comment, a
justification, a filter) can ever become markup. The pages hold no rule of their own: the API decides who may do
what, and the page shows the API's refusal verbatim.

The server puts only two kinds of values in the HTML: the signed-in user's name and path parameters (a request id,
a model name), always through ``html.escape``; everything the script needs arrives as JSON in the ``data-ctx``
attribute. A per-response nonce Content-Security-Policy lets only our own inline scripts run (defence in depth
should anything ever slip through), ``connect-src 'self'`` keeps the API calls same-origin, and
``frame-ancestors 'self'`` lets the Airflow UI (same origin) frame the pages while refusing any other site
(clickjacking on the Approve button).
"""

from __future__ import annotations

import json
import secrets
from html import escape
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from airgate.web.auth import CurrentActor
from airgate.web.deps import root_of

router = APIRouter()

NAV = (("approvals", "Approvals"), ("models", "Models"), ("audit", "Audit"), ("lineage", "Lineage"))
STATUSES = ("pending", "approved", "rejected", "expired", "all")
ASSETS = (
    "theme.js",
    "airgate.css",
    "common.js",
    "approvals.js",
    "request.js",
    "models.js",
    "model.js",
    "audit.js",
    "lineage.js",
)


def asset(name: str) -> str:
    """One file of ``static/``, read per response (a few KB): an edited script shows up without a restart."""
    if name not in ASSETS:
        raise ValueError(f"unknown page asset {name!r}")
    return (resources.files("airgate.web") / "static" / name).read_text(encoding="utf-8")


def _csp(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'nonce-{nonce}'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'self'",
        ]
    )


def render_page(
    request: Request,
    actor: Any,
    *,
    page: str,
    title: str,
    body: str,
    script: str,
    ctx: dict[str, Any] | None = None,
) -> HTMLResponse:
    """The shared layout: header with the four views and who is signed in, the page body, then the scripts."""
    root = root_of(request)
    nonce = secrets.token_urlsafe(18)
    data = {"root": root, "user": actor.username, "page": page, **(ctx or {})}
    current = ' aria-current="page"'
    nav = "".join(
        f'<a href="{escape(root)}/{key}"{current if key == page else ""} data-testid="nav-{key}">{label}</a>'
        for key, label in NAV
    )
    html = f"""<!doctype html>
<html lang="en" data-theme="light">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<link rel="icon" href="data:,">
<title>{escape(title)} · airgate</title>
<script nonce="{nonce}">{asset("theme.js")}</script>
<style>{asset("airgate.css")}</style>
</head>
<body data-page="{escape(page)}" data-ctx="{escape(json.dumps(data), quote=True)}">
<header class="top">
<nav aria-label="Governance"><span class="brand">airgate</span>{nav}</nav>
<span class="who">signed in as <b data-testid="signed-in-user">{escape(actor.username)}</b></span>
</header>
<main>
{body}
</main>
<script nonce="{nonce}">{asset("common.js")}</script>
<script nonce="{nonce}">{asset(script)}</script>
</body>
</html>
"""
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": _csp(nonce),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


def _field(label: str, control: str) -> str:
    return f'<label class="field">{label} {control}</label>'


@router.get("/approvals", response_class=HTMLResponse, tags=["pages"])
def approvals_page(request: Request, actor: CurrentActor) -> HTMLResponse:
    """The queue of approval requests, pending first by default; every row opens its evidence."""
    options = "".join(f'<option value="{s}">{s}</option>' for s in STATUSES)
    status = _field(
        "Status",
        f'<select id="status-filter" name="status" data-testid="approvals-filter-status">{options}</select>',
    )
    model = _field(
        "Model",
        '<select id="model-filter" name="model" data-testid="approvals-filter-model">'
        '<option value="">all models</option></select>',
    )
    body = f"""<h1>Approval requests</h1>
<p class="muted">Decisions are checked on the server: approver rights, separation of duties, quorum, expiry and
unchanged evidence.</p>
<div class="toolbar" id="approvals-filters">
{status}
{model}
</div>
<div id="approvals" aria-live="polite"></div>"""
    return render_page(request, actor, page="approvals", title="Approvals", body=body, script="approvals.js")


@router.get("/approvals/{request_id}", response_class=HTMLResponse, tags=["pages"])
def request_page(request_id: str, request: Request, actor: CurrentActor) -> HTMLResponse:
    """The evidence bundle of one request, its past decisions, and the decide form when the API allows it."""
    root = escape(root_of(request))
    body = f"""<p class="small"><a href="{root}/approvals">← Approval requests</a></p>
<h1>Approval request <code data-testid="request-id">{escape(request_id)}</code></h1>
<div id="request" aria-live="polite"><p class="muted">Loading…</p></div>
<section class="card" id="decide">
<h2>Your decision</h2>
<div id="decide-body"></div>
<div id="decision-message" data-testid="decision-message" class="msg" role="status" aria-live="polite"></div>
</section>"""
    return render_page(
        request,
        actor,
        page="approvals",
        title=f"Request {request_id}",
        body=body,
        script="request.js",
        ctx={"request_id": request_id},
    )


@router.get("/models", response_class=HTMLResponse, tags=["pages"])
def models_page(request: Request, actor: CurrentActor) -> HTMLResponse:
    """Every model with its champion by the promotion ledger and how many versions wait for a decision."""
    body = """<h1>Models</h1>
<p class="muted">The champion is what the promotion ledger says; nightly scoring refuses anything else.</p>
<div id="models" aria-live="polite"><p class="muted">Loading…</p></div>"""
    return render_page(request, actor, page="models", title="Models", body=body, script="models.js")


@router.get("/models/{model}", response_class=HTMLResponse, tags=["pages"])
def model_page(model: str, request: Request, actor: CurrentActor) -> HTMLResponse:
    """One model's ledger and versions, the open rollback proposals (Confirm where the API's rule allows it, its
    reason otherwise), with propose-rollback and break-glass revoke where the API allows them."""
    root = escape(root_of(request))
    body = f"""<p class="small"><a href="{root}/models">← Models</a></p>
<h1>Model <code data-testid="model-name">{escape(model)}</code></h1>
<div id="model-champion" aria-live="polite"><p class="muted">Loading…</p></div>
<div id="model-rollbacks" aria-live="polite"></div>
<section class="card" id="model-actions" hidden>
<h2>Roll back or revoke</h2>
<p class="muted small">Write why, then use a button in the versions table. A rollback is proposed here and takes
effect only when another approver confirms it (not you, the owner, or a trainer of either version); it makes an
earlier approved version champion again. A revocation (break-glass) withdraws the champion now, alone, and tells
the model's governance notifiers; scoring stops until another version is approved or rolled back to. All are
audited with your justification (a confirmation takes it as its optional comment).</p>
<label for="justification" class="muted small">Justification (required)</label>
<textarea id="justification" data-testid="justification" required maxlength="4000"
 placeholder="Why (at least 10 characters): incident, ticket, what you checked"></textarea>
</section>
<div id="model-message" data-testid="model-message" class="msg" role="status" aria-live="polite"></div>
<div id="model-versions"></div>
<div id="model-ledger"></div>"""
    return render_page(
        request,
        actor,
        page="models",
        title=f"Model {model}",
        body=body,
        script="model.js",
        ctx={"model": model},
    )


@router.get("/audit", response_class=HTMLResponse, tags=["pages"])
def audit_page(request: Request, actor: CurrentActor) -> HTMLResponse:
    """The hash-chained audit log: filters in the URL, keyset pages of 100, chain check and export."""
    root = escape(root_of(request))
    body = f"""<h1>Audit log</h1>
<form id="audit-filters" class="inline">
{_field("Model", '<input name="model" data-testid="audit-filter-model" size="16" autocomplete="off">')}
{_field("Version", '<input name="version" data-testid="audit-filter-version" size="6" autocomplete="off">')}
{_field("Actor", '<input name="actor" data-testid="audit-filter-actor" size="12" autocomplete="off">')}
{
        _field(
            "Event type",
            '<select name="event_type" id="audit-filter-type" data-testid="audit-filter-type">'
            '<option value="">any</option></select>',
        )
    }
{_field("Since (UTC)", '<input type="datetime-local" name="since" data-testid="audit-filter-since">')}
{_field("Until (UTC)", '<input type="datetime-local" name="until" data-testid="audit-filter-until">')}
<button type="submit" class="primary" data-testid="audit-apply">Apply</button>
<button type="button" id="audit-clear">Clear</button>
</form>
<div class="toolbar">
<button type="button" id="audit-prev" data-testid="audit-prev" disabled>← Previous (newer)</button>
<button type="button" id="audit-next" data-testid="audit-next" disabled>Next (older) →</button>
<span id="audit-page-info" class="muted small" aria-live="polite"></span>
<span style="margin-left:auto"></span>
<a class="button" id="audit-export-csv" data-testid="audit-export-csv" download
 href="{root}/api/audit/export?format=csv">Export CSV</a>
<a class="button" id="audit-export-json" data-testid="audit-export-json" download
 href="{root}/api/audit/export?format=json">Export JSON</a>
<button type="button" id="audit-verify" data-testid="audit-verify">Verify chain</button>
</div>
<div id="audit-verify-result" data-testid="audit-verify-result" class="msg" role="status" aria-live="polite"></div>
<div id="audit-table"><p class="muted">Loading…</p></div>"""
    return render_page(request, actor, page="audit", title="Audit", body=body, script="audit.js")


@router.get("/lineage", response_class=HTMLResponse, tags=["pages"])
def lineage_page(request: Request, actor: CurrentActor) -> HTMLResponse:
    """Lineage of ``?node=<kind>:<key>`` both ways, and the "as of" question for an auditor."""
    body = f"""<h1>Lineage</h1>
<form id="lineage-search-form" class="inline">
{
        _field(
            "Node",
            '<input name="node" data-testid="lineage-search" size="60" autocomplete="off" '
            'placeholder="approval:apr-… · dataset:clean-… · model/partition/event">',
        )
    }
<button type="submit" data-testid="lineage-go">Show</button>
</form>
<div id="lineage-message" class="msg" role="status" aria-live="polite"></div>
<div id="lineage" aria-live="polite"></div>
<section class="card">
<h2>As of</h2>
<p class="muted small">Which approved version was champion at a time, and which version had produced a partition
by then.</p>
<form id="asof-form" class="inline">
{_field("Model", '<input name="model" data-testid="asof-model" list="asof-models" size="18" required>')}
<datalist id="asof-models"></datalist>
{_field("Partition key", '<input name="partition_key" data-testid="asof-partition" size="14">')}
{_field("At (UTC)", '<input type="datetime-local" step="1" name="at" data-testid="asof-at" required>')}
<button type="submit" data-testid="asof-submit">Look up</button>
</form>
<div id="asof-result" data-testid="asof-result" aria-live="polite"></div>
</section>"""
    return render_page(request, actor, page="lineage", title="Lineage", body=body, script="lineage.js")


@router.get("/runs/{dag_id}/{run_id:path}", response_class=HTMLResponse, tags=["pages"])
def run_approval_page(dag_id: str, run_id: str, request: Request, actor: CurrentActor) -> HTMLResponse:
    """The "Approval" tab of a train DAG run's page (plugin ``external_views``, destination ``dag_run``): the
    request this run opened, found from the run itself (its training run id), shown as the request page shows it;
    else why there is none. Only path parameters reach the HTML, escaped."""
    from airgate.core.run_identity import training_run_id
    from airgate.governance.approval_wait import request_for_run
    from airgate.web.deps import all_specs, warehouse

    spec = next((s for s in all_specs() if s.dag_id("train") == dag_id), None)
    if spec is not None:
        state = request_for_run(warehouse(), training_run_id(spec.name, run_id))
        if state is not None:
            return request_page(state.request_id, request, actor)
    why = (
        "This run did not reach approval: it opened no approval request (it stopped, or is still running, before "
        "register_and_request_approval)."
        if spec is not None
        else "No approval request for this run: only the train DAGs of airgate models open one."
    )
    body = f"""<h1>Approval for run <code data-testid="run-id">{escape(run_id)}</code></h1>
<p class="muted" data-testid="run-approval-none">{escape(why)}</p>
<p class="small">DAG <code>{escape(dag_id)}</code></p>"""
    return render_page(request, actor, page="approvals", title=f"Run {run_id}", body=body, script="theme.js")
