"""Served reports run sandboxed, and Data Docs load only the vendored copies of their libraries (with integrity)."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airgate.governance import promotion
from airgate.web import reports
from tests.helpers import bearer, prepare_data, train_to_request

pytestmark = pytest.mark.api

EXTERNAL = re.compile(
    r"""<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE
)
VENDOR = resources.files("airgate.web") / "static" / "vendor"


def _sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def _assert_sandboxed(r: Any) -> None:
    csp = r.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert directives["sandbox"] in ([], ["allow-scripts"]), csp  # never allow-same-origin
    assert directives["default-src"] == ["'none'"] and directives["connect-src"] == ["'none'"], csp
    assert not re.search(r"https?:|\*", csp.replace("frame-ancestors 'self'", "")), (
        csp
    )  # no third-party origin
    assert r.headers["x-content-type-options"] == "nosniff"


def test_the_vendored_files_match_their_manifest() -> None:
    files = reports.vendored()
    assert {f.package for f in files.values()} >= {"jquery", "bootstrap", "vega", "vega-lite", "vega-embed"}
    on_disk = {str(p.relative_to(Path(str(VENDOR)))) for p in Path(str(VENDOR)).rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert on_disk == set(files)  # nothing unlisted is shipped
    for f in files.values():
        assert _sri(VENDOR.joinpath(*f.path.split("/")).read_bytes()) == f.sha384, f.path
        assert re.fullmatch(r"\d+\.\d+\.\d+", f.version), f  # pinned, never a floating tag


def test_every_cdn_url_of_the_installed_data_docs_templates_is_vendored() -> None:
    """A Great Expectations upgrade that adds a CDN library fails here, not silently in an approver's browser."""
    import great_expectations

    root = Path(great_expectations.__file__).parent / "render" / "view" / "templates"
    tags = re.findall(r"<(?:script|link)\b[^>]*>", "".join(p.read_text() for p in root.rglob("*.j2")))
    urls = {m for t in tags for m in re.findall(r"""(?:src|href)=["']((?:https?:)?//[^"']+)""", t)}
    assert urls and urls <= set(reports.by_cdn_url()), sorted(urls - set(reports.by_cdn_url()))


def test_data_docs_are_rewritten_to_the_vendored_copies() -> None:
    html = (
        '<head><script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>'
        "<script src='https://evil.example/x.js' integrity='sha384-x'></script>"
        '<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>'
        '<link rel="preconnect" href="//fonts.example">'
        '<link rel="icon" href="./static/images/favicon.ico">'
        "<script>var inline = 1;</script></head>"
    )
    out = reports.rewrite_data_docs(html, "/airgate")
    assert not EXTERNAL.search(out) and "evil" not in out and "fonts.example" not in out
    jq = reports.vendored()["jquery-3.7.1/jquery.min.js"]
    assert f'src="/airgate/static/vendor/{jq.path}" integrity="{jq.sha384}" crossorigin="anonymous"' in out
    assert "favicon.ico" in out and "var inline = 1;" in out


@pytest.fixture
def pending(sqlite_engine, spec, small_sim, mlflow_cfg, tmp_path: Path) -> dict:  # type: ignore[no-untyped-def]
    from airgate.data import checks

    labeled = prepare_data(sqlite_engine, spec, small_sim, tmp_path)
    req = train_to_request(sqlite_engine, spec, mlflow_cfg, tmp_path, labeled)
    checks.validate_pending(sqlite_engine, spec)  # GX results and Data Docs for the clean versions
    return promotion.get_request(sqlite_engine, req["approval_request_id"])


def test_served_reports_are_sandboxed_and_data_docs_load_only_vendored_files(
    client: TestClient, pending: dict
) -> None:
    h = bearer("viewer", "viewer")
    ctx = client.get(f"/airgate/api/approvals/{pending['id']}", headers=h).json()["context"]
    for link in (
        ctx["links"]["drift_report"],
        ctx["links"]["pareto_plot"],
        ctx["validation"]["data_docs_url"],
    ):
        r = client.get(link, headers=h)
        assert r.status_code == 200, link
        _assert_sandboxed(r)
    docs = client.get(ctx["validation"]["data_docs_url"], headers=h).text
    assert "<html" in docs.lower() and not EXTERNAL.search(docs)
    refs = re.findall(
        r'(?:src|href)="/airgate/static/vendor/([^"]+)" integrity="([^"]+)" crossorigin="anonymous"', docs
    )
    assert len(refs) >= 9  # the nine CDN scripts, and the stylesheets
    for path, integrity in refs:
        asset = client.get(f"/airgate/static/vendor/{path}")  # public: the sandboxed page sends no cookie
        assert asset.status_code == 200 and _sri(asset.content) == integrity, path
        assert asset.headers["access-control-allow-origin"] == "*"
    assert client.get("/airgate/static/vendor/manifest.json").status_code == 404
    assert client.get("/airgate/static/vendor/../../views.py").status_code == 404
