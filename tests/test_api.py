"""The governance plugin's HTTP API, authenticated by Airflow's own auth manager (real JWTs, no mocks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airgate import audit, governance, registry

from .helpers import prepare_data, train_to_request

pytestmark = pytest.mark.api


@pytest.fixture
def client(airflow_db, sqlite_engine, mlflow_cfg, monkeypatch) -> TestClient:  # type: ignore[no-untyped-def]
    from airflow.api_fastapi.app import init_auth_manager

    from airgate.web.app import mounted_app

    # The app finds the warehouse and MLflow through the Airflow connections, as under the api-server.
    monkeypatch.setenv("AIRFLOW_CONN_AIRGATE_WAREHOUSE", json.dumps(
        {"conn_type": "sqlite", "host": str(sqlite_engine.url.database)}))
    monkeypatch.setenv("AIRFLOW_CONN_AIRGATE_MLFLOW", json.dumps(
        {"conn_type": "generic", "extra": {"tracking_uri": mlflow_cfg.tracking_uri,
                                           "artifact_root": mlflow_cfg.artifact_root}}))
    init_auth_manager()
    return TestClient(mounted_app(), base_url="http://localhost")


def token(username: str, role: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))


def bearer(username: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(username, role)}"}


@pytest.fixture
def pending(sqlite_engine, spec, small_sim, mlflow_cfg, tmp_path: Path) -> dict:  # type: ignore[no-untyped-def]
    labeled = prepare_data(sqlite_engine, spec, small_sim, tmp_path)
    req = train_to_request(sqlite_engine, spec, mlflow_cfg, tmp_path, labeled)
    return governance.get_request(sqlite_engine, req["approval_request_id"])


def _decide(client: TestClient, req: dict, headers: dict[str, str], **body: str):  # type: ignore[no-untyped-def]
    payload = {"decision": "approve", "comment": "reviewed the evidence", "evidence_hash": req["evidence_hash"]}
    payload.update(body)
    return client.post(f"/airgate/api/approvals/{req['id']}/decisions", json=payload, headers=headers)


def test_no_user_gets_401(client: TestClient, pending: dict) -> None:
    assert client.get("/airgate/api/approvals").status_code == 401
    assert _decide(client, pending, {}).status_code == 401
    assert client.get("/airgate/approvals").status_code == 401


def test_viewer_can_read_but_not_approve(client: TestClient, pending: dict, sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    listed = client.get("/airgate/api/approvals", headers=bearer("viewer", "viewer"))
    assert listed.status_code == 200 and listed.json()[0]["id"] == pending["id"]
    assert listed.json()[0]["gates"]["beats_baseline"] == "pass"
    r = _decide(client, pending, bearer("viewer", "viewer"))
    assert r.status_code == 403 and r.json()["code"] == "not_approver"
    assert audit.events(sqlite_engine, event_type="decision_refused")[-1]["actor"] == "viewer"


def test_trainer_cannot_approve_their_own_model(client: TestClient, pending: dict, mlflow_cfg, spec) -> None:  # type: ignore[no-untyped-def]
    r = _decide(client, pending, bearer("trainer", "op"))
    assert r.status_code == 403 and r.json()["code"] == "separation_of_duties"
    assert registry.alias_version(mlflow_cfg, spec.name) is None


def test_approver_approves_and_the_alias_moves(client: TestClient, pending: dict, mlflow_cfg, spec,  # type: ignore[no-untyped-def]
                                               sqlite_engine) -> None:
    r = _decide(client, pending, bearer("approver", "op"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    assert registry.alias_version(mlflow_cfg, spec.name) == pending["model_version"]
    ledger = client.get(f"/airgate/api/models/{spec.name}/ledger", headers=bearer("viewer", "viewer")).json()
    assert ledger[-1]["approval_id"] == pending["id"] and ledger[-1]["actor"] == "approver"
    assert client.get("/airgate/api/audit/verify", headers=bearer("viewer", "viewer")).json()["ok"] is True


def test_cookie_auth_needs_the_csrf_header(client: TestClient, pending: dict) -> None:
    client.cookies.set("_token", token("approver", "op"))
    r = _decide(client, pending, {})
    assert r.status_code == 403 and "CSRF" in r.text
    r = _decide(client, pending, {"X-Requested-With": "airgate"})
    assert r.status_code == 200 and r.json()["status"] == "approved"


def test_stale_evidence_and_bad_input_are_refused(client: TestClient, pending: dict) -> None:
    r = _decide(client, pending, bearer("approver", "op"), evidence_hash="0" * 64)
    assert r.status_code == 409 and r.json()["code"] == "evidence_changed"
    assert _decide(client, pending, bearer("approver", "op"), comment="").status_code == 422
    assert _decide(client, pending, bearer("approver", "op"), decision="maybe").status_code == 422
    missing = client.get("/airgate/api/approvals/apr-nope", headers=bearer("viewer", "viewer"))
    assert missing.status_code == 404


def test_page_lists_requests_and_escapes_text(client: TestClient, pending: dict, sqlite_engine, spec,  # type: ignore[no-untyped-def]
                                              mlflow_cfg) -> None:
    evil = "<script>alert(1)</script>"
    governance.decide(sqlite_engine, spec, pending["id"], governance.Actor("approver", frozenset()), "reject",
                      evil, pending["evidence_hash"], lambda m, v: None)
    page = client.get("/airgate/approvals", headers=bearer("viewer", "viewer"))
    assert page.status_code == 200 and pending["id"] in page.text and "rejected" in page.text
    assert "<script>alert" not in page.text.split("<script>", 1)[0]  # nothing injected before our own script
    detail = client.get(f"/airgate/api/approvals/{pending['id']}", headers=bearer("viewer", "viewer")).json()
    assert detail["decisions"][0]["comment"] == evil  # stored verbatim, rendered escaped


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/airgate/openapi.json").json()["paths"]
    assert {"/api/approvals", "/api/approvals/{request_id}", "/api/approvals/{request_id}/decisions",
            "/api/audit/verify", "/api/audit", "/api/audit/export"} <= set(paths)


def test_review_answers_through_the_api(client: TestClient, sqlite_engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from airgate import clean, collect, label

    from .helpers import land

    collect.ingest(sqlite_engine, spec, land(small_sim, tmp_path, range(1)))
    clean.clean_pending(sqlite_engine, spec)
    label.label_pending(sqlite_engine, spec)
    unlabeled = small_sim.batch(0).events.query("correct.isna() and response_time_ms >= 1000")["event_id"].tolist()
    body = {"answers": [{"event_id": unlabeled[0], "label": 1}]}
    assert client.post(f"/airgate/api/reviews/{spec.name}/answers", json=body).status_code == 401
    viewer = client.post(f"/airgate/api/reviews/{spec.name}/answers", json=body, headers=bearer("viewer", "viewer"))
    assert viewer.status_code == 403
    ok = client.post(f"/airgate/api/reviews/{spec.name}/answers", json=body, headers=bearer("approver", "op"))
    assert ok.status_code == 200 and ok.json() == {"accepted": 1, "duplicates": 0}
    bad = client.post(f"/airgate/api/reviews/{spec.name}/answers", headers=bearer("approver", "op"),
                      json={"answers": [{"event_id": "nope", "label": 1}]})
    assert bad.status_code == 422 and "unknown event ids" in bad.text
    assert client.get(f"/airgate/api/reviews/{spec.name}/queue", headers=bearer("viewer", "viewer")).json() == []
    result = label.label_pending(sqlite_engine, spec)
    assert result.by_source.get("human") == 1


def test_audit_list_filters_pages_and_exports(client: TestClient, sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    import csv
    import io

    from airgate import audit

    for i in range(25):
        audit.record(sqlite_engine, actor="alice" if i % 2 else "<b>mallory</b>", event_type="decision",
                     model="knowledge_tracing", entity={"model_version": str(i % 3)}, details={"i": i})
    assert client.get("/airgate/api/audit").status_code == 401
    h = bearer("viewer", "viewer")  # anyone signed in may audit
    first = client.get("/airgate/api/audit", params={"limit": 10}, headers=h).json()
    assert len(first["events"]) == 10 and first["next_before"] is not None
    second = client.get("/airgate/api/audit", params={"limit": 10, "before": first["next_before"]}, headers=h).json()
    assert {e["seq"] for e in first["events"]}.isdisjoint({e["seq"] for e in second["events"]})
    mine = client.get("/airgate/api/audit", params={"actor": "alice", "version": "1"}, headers=h).json()["events"]
    assert mine and all(e["actor"] == "alice" and e["entity"]["model_version"] == "1" for e in mine)
    assert client.get("/airgate/api/audit", params={"limit": 5000}, headers=h).status_code == 422
    r = client.get("/airgate/api/audit/export", params={"format": "csv", "actor": "alice"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(r.text)))) == 12
    r = client.get("/airgate/api/audit/export", params={"format": "json"}, headers=h)
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert len(r.text.strip().splitlines()) == audit.count(sqlite_engine)
    assert client.get("/airgate/api/audit/export", params={"format": "xml"}, headers=h).status_code == 422
