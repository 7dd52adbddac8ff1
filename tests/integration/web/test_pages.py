"""The Governance pages (HTML shells whose scripts call the JSON API), served with real Airflow JWTs.

What a user would notice, and what can fail: a page without a session, a path value that turns into markup, a hook
the browser tests click that went missing, a script calling the wrong API path, a data sink that parses HTML, the
menu entries in the Airflow UI, a colour mode that does not follow the Airflow UI.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import tomllib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.helpers import REPO_ROOT, bearer, token

pytestmark = pytest.mark.api

ROOT = REPO_ROOT
PAGES = [
    "/airgate/approvals",
    "/airgate/approvals/apr-1",
    "/airgate/models",
    "/airgate/models/knowledge_tracing",
    "/airgate/audit",
    "/airgate/lineage",
    "/airgate/lineage?node=approval:apr-1",
]

# The data-testid hooks of the contract (/airgate pages), per page. Hooks on rows and buttons built from API data
# live in the page script, which is served inline with the page, so the served HTML holds every one of them.
HOOKS = {
    "/airgate/approvals": ["approval-row", "open-request"],
    "/airgate/approvals/apr-1": [
        "request-status",
        "evidence-metrics",
        "evidence-pareto",
        "evidence-slices",
        "evidence-validation",
        "evidence-drift",
        "evidence-labels",
        "evidence-versions",
        "evidence-code-version",
        "evidence-gates",
        "decision-comment",
        "approve-button",
        "reject-button",
        "decision-message",
        "decisions",
    ],
    "/airgate/models": ["model-row"],
    "/airgate/models/knowledge_tracing": [
        "champion-version",
        "ledger-row",
        "version-row",
        "rollback-button",
        "rollback-proposal",
        "confirm-button",
        "confirm-refusal",
        "revoke-button",
        "justification",
        "model-message",
    ],
    "/airgate/audit": [
        "audit-filter-model",
        "audit-filter-version",
        "audit-filter-actor",
        "audit-filter-type",
        "audit-filter-since",
        "audit-filter-until",
        "audit-apply",
        "audit-row",
        "audit-next",
        "audit-prev",
        "audit-verify",
        "audit-verify-result",
        "audit-export-csv",
        "audit-export-json",
    ],
    "/airgate/lineage": [
        "lineage-focus",
        "lineage-node",
        "asof-model",
        "asof-partition",
        "asof-at",
        "asof-submit",
        "asof-result",
    ],
}
# The data- attributes the contract puts on rows and nodes, set by the page scripts.
DATA_ATTRS = {
    "/airgate/approvals": ["request-id"],
    "/airgate/models": ["model"],
    "/airgate/models/knowledge_tracing": ["version"],
    "/airgate/audit": ["event-type", "seq"],
    "/airgate/lineage": ["ref", "kind"],
}
# Hooks that are plain markup (present before any script runs), so a browser test can use them at once.
STATIC_HOOKS = {
    "/airgate/approvals/apr-1": ["decision-message"],
    "/airgate/models/knowledge_tracing": ["justification", "model-message"],
    "/airgate/audit": HOOKS["/airgate/audit"][:7]
    + [
        "audit-next",
        "audit-prev",
        "audit-verify",
        "audit-verify-result",
        "audit-export-csv",
        "audit-export-json",
    ],
    "/airgate/lineage": ["asof-model", "asof-partition", "asof-at", "asof-submit", "asof-result"],
}


class _Doc(HTMLParser):
    """The served markup as the browser parses it: elements with attributes, and each script's text."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.elements
            if (tag is None or t == tag) and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def testids(self) -> set[str]:
        return {str(a["data-testid"]) for _, a in self.elements if a.get("data-testid")}

    def ctx(self) -> dict[str, Any]:
        return dict(json.loads(str(self.find("body")[0]["data-ctx"])))


def parse(html: str) -> _Doc:
    doc = _Doc()
    doc.feed(html)
    return doc


def get(client: TestClient, path: str, **headers: str) -> Any:
    return client.get(path, headers=headers or bearer("viewer", "viewer"))


@pytest.mark.parametrize("path", PAGES)
def test_page_needs_a_user(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer not-a-jwt"}).status_code in (401, 403)
    page = get(client, path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    doc = parse(page.text)
    assert doc.ctx()["user"] == "viewer" and doc.find("b", data_testid="signed-in-user")
    assert "signed in as" in page.text


def test_the_airflow_ui_cookie_is_enough(client: TestClient) -> None:
    """Inside the Airflow UI iframe the page has no Bearer token, only the UI's _token cookie."""
    client.cookies.set("_token", token("approver", "op"))
    page = client.get("/airgate/approvals")
    assert page.status_code == 200 and parse(page.text).ctx()["user"] == "approver"


def test_header_links_the_four_views_and_marks_the_current_one(client: TestClient) -> None:
    for path, current in [
        ("/airgate/approvals", "approvals"),
        ("/airgate/approvals/x", "approvals"),
        ("/airgate/models/m", "models"),
        ("/airgate/audit", "audit"),
        ("/airgate/lineage", "lineage"),
    ]:
        doc = parse(get(client, path).text)
        links = {
            str(a["data-testid"]): a
            for a in doc.find("a")
            if str(a.get("data-testid", "")).startswith("nav-")
        }
        assert {k: v["href"] for k, v in links.items()} == {
            "nav-approvals": "/airgate/approvals",
            "nav-models": "/airgate/models",
            "nav-audit": "/airgate/audit",
            "nav-lineage": "/airgate/lineage",
        }
        assert [k for k, v in links.items() if v.get("aria-current") == "page"] == [f"nav-{current}"]
        assert doc.ctx()["root"] == "/airgate"  # every link and API call in the scripts starts from here


@pytest.mark.parametrize("kind", ["approvals", "models"])
def test_path_values_are_escaped(client: TestClient, kind: str) -> None:
    evil = """<img src=x onerror="alert(1)">'&<script>alert(2)<b>"""  # no "/": a path segment cannot hold one
    page = get(client, f"/airgate/{kind}/{quote(evil, safe='')}")
    assert page.status_code == 200
    assert evil not in page.text and "<img src=x" not in page.text and "<script>alert" not in page.text
    doc = parse(page.text)
    assert not doc.find("img")  # nothing the path said became an element
    key = "request_id" if kind == "approvals" else "model"
    assert doc.ctx()[key] == evil  # the script gets the value back intact, as data
    shown = doc.find(data_testid="request-id" if kind == "approvals" else "model-name")
    assert shown and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&#x27;&amp;" in page.text
    assert len(doc.scripts) == 3  # theme, common helpers, the page's own: nothing injected


def test_the_username_is_escaped(client: TestClient) -> None:
    page = get(client, "/airgate/audit", **bearer("<b>mallory</b>", "viewer"))
    assert (
        page.status_code == 200
        and "<b>mallory</b>" not in page.text
        and "&lt;b&gt;mallory&lt;/b&gt;" in page.text
    )


@pytest.mark.parametrize("path", list(HOOKS))
def test_pages_carry_the_contract_hooks(client: TestClient, path: str) -> None:
    page = get(client, path)
    doc = parse(page.text)
    script = doc.scripts[-1]
    for hook in HOOKS[path]:
        assert hook in doc.testids() or f"'{hook}'" in script, f"{path} lacks the hook {hook}"
    for attr in DATA_ATTRS.get(path, []):
        assert re.search(r"data: \{[^}]*'?\b" + re.escape(attr) + r"'?:", script), f"{path}: no data-{attr}"
    assert set(STATIC_HOOKS.get(path, [])) <= doc.testids()


def test_scripts_call_the_right_api_paths(client: TestClient) -> None:
    def script(path: str) -> str:
        return parse(get(client, path).text).scripts[-1]

    common = parse(get(client, "/airgate/models").text).scripts[1]
    assert "credentials: 'same-origin'" in common and "'X-Requested-With': 'airgate'" in common
    assert "root + '/api' + path" in common and "method: 'POST'" in common
    assert "AG.getJSON('/approvals', {status:" in script("/airgate/approvals")
    detail = script("/airgate/approvals/apr-1")
    assert "AG.getJSON('/approvals/' + AG.seg(requestId))" in detail
    assert "AG.postJSON('/approvals/' + AG.seg(requestId) + '/decisions'" in detail
    assert (
        "evidence_hash: loadedHash" in detail and "you.can_decide" in detail and "links.pareto_plot" in detail
    )
    assert "AG.getJSON('/models')" in script("/airgate/models")
    model = script("/airgate/models/m")
    assert "AG.getJSON('/models/' + AG.seg(model))" in model
    assert "'/rollback', {to_version:" in model and "'/revoke', {version:" in model
    assert (
        "window.confirm(" in model
        and "you.can_revoke" in model
        and "v.can_roll_back_to && you.can_rollback" in model
    )
    # four eyes: Confirm only where the server's own rule allows it, its reason verbatim otherwise
    assert "'/rollbacks/' + AG.seg(p.id) + '/confirm'" in model
    assert "if (p.can_confirm)" in model and "text: p.cannot_confirm" in model
    audit = script("/airgate/audit")
    for call in [
        "AG.getJSON('/audit', ",
        "AG.getJSON('/audit/verify')",
        "AG.getJSON('/audit/event-types')",
        "AG.apiUrl('/audit/export', ",
    ]:
        assert call in audit
    assert "const PAGE = 100;" in audit and "body.next_before" in audit and "stack.pop()" in audit
    lineage = script("/airgate/lineage")
    assert (
        "AG.getJSON('/lineage', {node: focusRef})" in lineage and "AG.getJSON('/lineage/as-of', " in lineage
    )


def test_these_api_paths_exist(client: TestClient) -> None:
    """The paths the scripts call are routes of the app (a renamed route breaks the page, not a test of it)."""
    paths = set(client.get("/airgate/openapi.json").json()["paths"])
    assert {
        "/api/approvals",
        "/api/approvals/{request_id}",
        "/api/approvals/{request_id}/decisions",
        "/api/models",
        "/api/models/{model}",
        "/api/models/{model}/rollback",
        "/api/models/{model}/rollbacks/{proposal_id}/confirm",
        "/api/models/{model}/revoke",
        "/api/audit",
        "/api/audit/export",
        "/api/audit/verify",
        "/api/audit/event-types",
        "/api/lineage",
        "/api/lineage/as-of",
    } <= paths
    pages = {p for p in paths if not p.startswith("/api/")}
    assert {
        "/approvals",
        "/approvals/{request_id}",
        "/models",
        "/models/{model}",
        "/audit",
        "/lineage",
    } <= pages


@pytest.mark.parametrize("path", PAGES)
def test_no_script_turns_data_into_markup(client: TestClient, path: str) -> None:
    page = get(client, path)
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "createContextualFragment",
        "DOMParser",
    ]:
        assert sink not in page.text, f"{path} uses {sink}"
    # Inline handlers would be markup-as-code, and the nonce CSP blocks them anyway.
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page.text, flags=re.S)
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", markup)


def test_only_our_own_scripts_may_run(client: TestClient) -> None:
    page = get(client, "/airgate/approvals/apr-1")
    csp = page.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
    assert nonce and "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    assert "frame-ancestors 'self'" in csp and "connect-src 'self'" in csp
    scripts = parse(page.text).find("script")
    assert scripts and all(s.get("nonce") == nonce.group(1) for s in scripts)
    assert (
        get(client, "/airgate/approvals/apr-1").headers["content-security-policy"] != csp
    )  # fresh per response
    assert page.headers["cache-control"] == "no-store"


def test_colour_mode_follows_the_airflow_ui(client: TestClient) -> None:
    theme = parse(get(client, "/airgate/models").text).scripts[0]
    assert "localStorage.getItem('theme')" in theme and "(prefers-color-scheme: dark)" in theme
    assert "addEventListener('storage'" in theme
    css = get(client, "/airgate/models").text
    assert ':root[data-theme="dark"]' in css and "--bg:" in css
    # The key is the Airflow UI's own (next-themes' default storageKey "theme"); fail loudly if an upgrade moves it.
    dist = (
        Path(sys.prefix)
        / "lib"
        / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        / "site-packages"
        / "airflow"
        / "ui"
        / "dist"
        / "assets"
    )
    bundles = list(dist.glob("index-*.js")) if dist.is_dir() else []
    if not bundles:
        pytest.skip("the built Airflow UI is not installed here")
    assert any(re.search(r"storageKey:\w+=`theme`", b.read_text(errors="ignore")) for b in bundles)


def test_the_page_assets_are_safe_to_inline() -> None:
    from airgate.web import views

    for name in views.ASSETS:
        text = views.asset(name)
        assert "</script" not in text.lower() and "<!--" not in text, name
    with pytest.raises(ValueError):
        views.asset("../app.py")


def test_the_page_assets_ship_with_the_package() -> None:
    """The pages read static/*.js and *.css at run time: a wheel without them would serve broken pages."""
    from fnmatch import fnmatch

    from airgate.web import views

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "airgate"
    ]
    for name in views.ASSETS:
        assert any(fnmatch(f"web/static/{name}", pattern) for pattern in data), f"{name} not in package-data"


def test_the_plugin_adds_four_governance_views(client: TestClient) -> None:
    spec = importlib.util.spec_from_file_location(
        "airgate_plugin_under_test", ROOT / "plugins" / "airgate_plugin.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    views = [v for v in module.AirgatePlugin.external_views if v["destination"] == "nav"]  # + the run tab
    assert [(v["name"], v["href"], v["url_route"], v["category"], v["destination"]) for v in views] == [
        ("Approvals", "/airgate/approvals", "airgate-approvals", "Governance", "nav"),
        ("Models", "/airgate/models", "airgate-models", "Governance", "nav"),
        ("Audit", "/airgate/audit", "airgate-audit", "Governance", "nav"),
        ("Lineage", "/airgate/lineage", "airgate-lineage", "Governance", "nav"),
    ]
    for v in views:  # each entry opens a page that exists
        assert get(client, v["href"]).status_code == 200
