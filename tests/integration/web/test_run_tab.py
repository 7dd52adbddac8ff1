"""The "Approval" tab on a train DAG run's page: the plugin's dag_run view and the page it opens."""

from __future__ import annotations

import importlib.util
from datetime import timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from airgate.core.run_identity import training_run_id
from airgate.core.warehouse import approval_requests, utcnow
from tests.helpers import REPO_ROOT, bearer

pytestmark = pytest.mark.api

RUN = "manual__2026-03-01T12:00:00+00:00"


def _plugin_views() -> list[dict[str, str]]:
    spec = importlib.util.spec_from_file_location(
        "airgate_plugin_run_tab", REPO_ROOT / "plugins" / "airgate_plugin.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.AirgatePlugin.external_views)


def test_the_plugin_adds_an_approval_tab_to_every_dag_run(client: TestClient) -> None:
    tabs = [v for v in _plugin_views() if v["destination"] == "dag_run"]
    assert tabs == [
        {
            "name": "Approval",
            "href": "/airgate/runs/{DAG_ID}/{RUN_ID}",
            "destination": "dag_run",
            "url_route": "airgate-run-approval",
        }
    ]


def _page(client: TestClient, dag_id: str, run_id: str) -> str:
    r = client.get(f"/airgate/runs/{dag_id}/{quote(run_id, safe='')}", headers=bearer("viewer", "viewer"))
    assert r.status_code == 200, r.text
    return r.text


def test_the_tab_shows_the_runs_own_request(client: TestClient, sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    with sqlite_engine.begin() as conn:
        conn.execute(
            approval_requests.insert().values(
                id="apr-tab",
                model="knowledge_tracing",
                model_version="2",
                training_run_id=training_run_id("knowledge_tracing", RUN),
                evidence_hash="h" * 64,
                evidence={},
                requested_by="carol",
                owner="trainer",
                quorum=1,
                status="pending",
                created_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
    html = _page(client, "knowledge_tracing__train", RUN)
    assert 'data-testid="request-id">apr-tab<' in html and "request.js" not in html  # inlined, not linked
    other = _page(client, "knowledge_tracing__train", "manual__other")
    assert "did not reach approval" in other and "apr-tab" not in other
    assert "only the train DAGs" in _page(client, "knowledge_tracing__score", RUN)


def test_the_tab_escapes_what_the_url_says(client: TestClient) -> None:
    html = _page(client, "knowledge_tracing__train", "<script>alert(1)</script>")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
