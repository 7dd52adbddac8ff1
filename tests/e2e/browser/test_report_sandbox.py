"""Served reports in a real browser: Data Docs work under their sandboxed CSP, and a report cannot act as the approver.

The unit and API tests check the headers and the rewritten HTML; only a browser shows that the policy does what
they promise: that the vendored libraries still load and run in the sandbox's opaque origin (``'self'``, integrity
and CORS all have to agree), that nothing is fetched from a CDN, and that a script in a report gets neither the
approver's cookie nor the API. The approver opens Data Docs the way the evidence page offers them (a new tab), and
a hostile page planted in the Data Docs site probes what a malicious report could reach.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.e2e.browser.conftest import TIMEOUT_MS, Site, artifacts_dir

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
HOSTILE = "probe-hostile.html"
SANDBOX_STORAGE = re.compile(
    r"^pageerror: Failed to read the 'sessionStorage' property .* lacks the 'allow-same-origin'"
)
# What a hostile report's own script can reach: the approver's cookie, storage, and the API with their credentials.
PROBE_JS = """
(async () => {
  const out = {origin: self.origin};
  try { out.cookie = document.cookie; } catch (e) { out.cookie_error = e.name; }
  try { out.storage = String(window.localStorage.length); } catch (e) { out.storage_error = e.name; }
  for (const [key, url] of [["api_relative", "/airgate/api/me"], ["api_absolute", location.origin + "/airgate/api/me"]]) {
    try {
      const r = await fetch(url, {credentials: "include"});
      out[key] = "status " + r.status + ": " + (await r.text()).slice(0, 200);
    } catch (e) { out[key] = "blocked: " + e.name; }
  }
  document.getElementById("probe").textContent = JSON.stringify(out);
})();
"""
HOSTILE_HTML = f"""<!doctype html><html><head><title>probe</title></head>
<body><pre id="probe">not run</pre><script>{PROBE_JS}</script></body></html>
"""


def _expect() -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    return expect


class Watch:
    """Every request, failed request, console error and page error of one page, kept for the asserts."""

    def __init__(self, page: Any) -> None:
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def foreign(self) -> list[str]:
        """Requests that left for anything but this server (data: and blob: URLs never leave the browser)."""
        return [
            u
            for u in self.requests
            if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname not in LOCAL_HOSTS
        ]


def _site_folder(site: Site) -> Path:
    """The local Data Docs site the server serves for the model (the folder of its recorded index page)."""
    from sqlalchemy import create_engine, select

    from airgate.core.warehouse import data_validations
    from airgate.governance import evidence

    engine = create_engine(site.warehouse_url)
    try:
        with engine.connect() as conn:
            docs = conn.execute(
                select(data_validations.c.docs_path).where(
                    data_validations.c.model == site.model, data_validations.c.docs_path.is_not(None)
                )
            ).scalar()
    finally:
        engine.dispose()
    assert docs, "the seeded validation recorded no Data Docs"
    return Path(str(evidence._site(docs).path))


def _open_data_docs(approver: Any, site: Site) -> tuple[Any, Watch]:
    """The request's evidence links its Data Docs; the approver opens that link in a tab of their own (signed in
    with the same cookie), watched from its first request."""
    frame = approver.open_governance("Approvals")
    frame.locator(f'[data-testid="approval-row"][data-request-id="{site.request["id"]}"]').get_by_test_id(
        "open-request"
    ).click()
    link = frame.get_by_test_id("evidence-data-docs")
    _expect()(link).to_be_visible()
    href = link.get_attribute("href")
    assert href and href.startswith(f"/airgate/api/data-docs/{site.model}/"), href
    tab = approver.context.new_page()
    watch = Watch(tab)
    tab.goto(href)
    return tab, watch


def _assert_libraries_ran(tab: Any, watch: Watch) -> None:
    """jQuery, Bootstrap and bootstrap-table loaded from the vendored copies and ran; the results table rendered."""
    expect = _expect()
    # bootstrap-table ran: it wraps each data-toggle="table" in a .bootstrap-table box with its toolbar.
    expect(tab.locator(".bootstrap-table tbody tr >> visible=true").first).to_be_visible()
    libs = tab.evaluate(
        """() => ({
        jquery: window.jQuery ? jQuery.fn.jquery : null,
        bootstrap: !!(window.jQuery && jQuery.fn.modal && jQuery.fn.tooltip),
        table: !!(window.jQuery && jQuery.fn.bootstrapTable),
        vega: [typeof window.vega, typeof window.vegaLite, typeof window.vegaEmbed],
        scripts: [...document.scripts].map(s => s.src).filter(Boolean),
        sheets: [...document.querySelectorAll('link[rel=stylesheet]')].map(l => l.href),
      })"""
    )
    assert libs["jquery"] == "3.7.1" and libs["bootstrap"] and libs["table"], libs
    assert libs["scripts"] and all("/airgate/static/vendor/" in s for s in libs["scripts"]), libs
    assert all("/airgate/static/vendor/" in s for s in libs["sheets"]), libs
    loaded = set(watch.requests)
    assert set(libs["scripts"]) <= loaded, (libs["scripts"], watch.requests)
    fonts = tab.evaluate(
        "async () => { await document.fonts.ready;"
        " return [...document.fonts].map(f => f.family + ':' + f.status); }"
    )
    assert not [f for f in fonts if f.endswith(":error")], fonts


def _assert_clean(watch: Watch) -> None:
    """Nothing left for another origin (not even an attempt the CSP then blocked), nothing failed, and the only
    console error is the one the sandbox is there for: GX's call-to-action footer reads ``sessionStorage`` (it
    then stays hidden; every other script of the page is a block of its own and runs)."""
    assert watch.foreign() == [], f"requests left for other origins: {watch.foreign()}"
    assert watch.failed == [], f"failed requests: {watch.failed}"
    unexpected = [e for e in watch.errors if not SANDBOX_STORAGE.search(e)]
    assert unexpected == [], f"console errors (CSP, integrity, CORS?): {unexpected}"


def _probe(tab: Any, url: str) -> dict[str, Any]:
    """Open ``url`` (the planted page) in the report tab; returns what its own script could reach."""
    seen = Watch(tab)
    tab.goto(url)
    probe = tab.locator("#probe")
    _expect()(probe).not_to_have_text("not run")
    result: dict[str, Any] = json.loads(probe.text_content() or "{}")
    result["requests"] = seen.requests
    return result


def test_data_docs_run_sandboxed_and_a_report_cannot_act_as_the_approver(ui: Any, site: Site) -> None:
    approver = ui("approver")
    tab, watch = _open_data_docs(approver, site)
    assert urlparse(tab.url).path.startswith(f"/airgate/api/data-docs/{site.model}/"), tab.url
    _assert_libraries_ran(tab, watch)
    tab.locator(".bootstrap-table").first.screenshot(path=str(artifacts_dir() / "data-docs-index.png"))
    folder = _site_folder(site)
    # A validation result with charts (the KL-divergence expectation's bar charts, drawn by vega-embed).
    result = next(p for p in sorted(folder.glob("validations/**/*.html")) if "vegaEmbed(" in p.read_text())
    tab.emulate_media(color_scheme="dark")  # GX's dark theme has CSS backgrounds of its own
    tab.goto(f"{site.base}/airgate/api/data-docs/{site.model}/{result.relative_to(folder).as_posix()}")
    _assert_libraries_ran(tab, watch)
    charts = tab.evaluate("() => [typeof vega, typeof vegaLite, typeof vegaEmbed, vega.version]")
    assert charts[:3] == ["object", "object", "function"] and charts[3] == "5.33.1", charts
    drawn = tab.locator(".vega-embed canvas, .vega-embed svg")  # Vega compiled its spec (eval) and drew it
    _expect()(drawn.first).to_be_visible()
    assert drawn.count() >= 2, drawn.count()
    _assert_clean(watch)
    tab.screenshot(path=str(artifacts_dir() / "data-docs.png"), full_page=True)

    # The approver's own page (Airflow's origin) reads the API with the cookie: the control for what follows.
    me = approver.page.evaluate("() => fetch('/airgate/api/me').then(r => r.status)")
    assert me == 200, me
    assert any(c["name"] == "_token" for c in approver.context.cookies())

    # A hostile page in the Data Docs site (the most permissive report CSP: scripts and eval allowed).
    (folder / HOSTILE).write_text(HOSTILE_HTML)
    got = _probe(tab, f"{site.base}/airgate/api/data-docs/{site.model}/{HOSTILE}")
    assert got["origin"] == "null", got  # the sandbox: an opaque origin, not Airflow's
    assert got.get("cookie_error") == "SecurityError" and "cookie" not in got, got
    assert got.get("storage_error") == "SecurityError", got
    assert got["api_relative"].startswith("blocked") and got["api_absolute"].startswith("blocked"), got
    assert not [u for u in got["requests"] if "/airgate/api/me" in u], got["requests"]  # never left the page

    # The drift report, an approval artifact: also opaque, no cookie.
    drift = f"{site.base}/airgate/api/approvals/{site.request['id']}/artifacts/drift.html"
    tab.goto(drift)
    boxed = tab.evaluate(
        "() => { try { return [self.origin, document.cookie]; } catch (e) { return [self.origin, e.name]; } }"
    )
    assert boxed == ["null", "SecurityError"], boxed
