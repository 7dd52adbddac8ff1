"""The governance plugin's HTTP API, authenticated by Airflow's own auth manager (real JWTs, no mocks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airgate.core import audit, registry
from airgate.governance import promotion
from tests.helpers import bearer, prepare_data, token, train_to_request

pytestmark = pytest.mark.api


@pytest.fixture
def pending(sqlite_engine, spec, small_sim, mlflow_cfg, tmp_path: Path) -> dict:  # type: ignore[no-untyped-def]
    labeled = prepare_data(sqlite_engine, spec, small_sim, tmp_path)
    req = train_to_request(sqlite_engine, spec, mlflow_cfg, tmp_path, labeled)
    return promotion.get_request(sqlite_engine, req["approval_request_id"])


def _decide(client: TestClient, req: dict, headers: dict[str, str], **body: str):  # type: ignore[no-untyped-def]
    payload = {
        "decision": "approve",
        "comment": "reviewed the evidence",
        "evidence_hash": req["evidence_hash"],
    }
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


def test_approver_approves_and_the_alias_moves(
    client: TestClient,
    pending: dict,
    mlflow_cfg,
    spec,  # type: ignore[no-untyped-def]
    sqlite_engine,
) -> None:
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


def test_comments_are_stored_verbatim_and_served_as_json(
    client: TestClient,
    pending: dict,
    sqlite_engine,  # type: ignore[no-untyped-def]
    spec,
) -> None:
    evil = "<script>alert(1)</script>"
    promotion.decide(
        sqlite_engine,
        spec,
        pending["id"],
        promotion.Actor("approver", frozenset()),
        "reject",
        evil,
        pending["evidence_hash"],
        lambda m, v: None,
    )
    r = client.get(f"/airgate/api/approvals/{pending['id']}", headers=bearer("viewer", "viewer"))
    assert r.headers["content-type"].startswith("application/json")  # data never travels as HTML
    assert r.json()["decisions"][0]["comment"] == evil  # stored verbatim; pages render it as text


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/airgate/openapi.json").json()["paths"]
    assert {
        "/api/approvals",
        "/api/approvals/{request_id}",
        "/api/approvals/{request_id}/decisions",
        "/api/approvals/{request_id}/artifacts/{name}",
        "/api/models",
        "/api/models/{model}",
        "/api/models/{model}/rollback",
        "/api/models/{model}/rollbacks/{proposal_id}/confirm",
        "/api/models/{model}/revoke",
        "/api/lineage",
        "/api/lineage/as-of",
        "/api/audit/verify",
        "/api/audit",
        "/api/audit/export",
        "/api/audit/event-types",
    } <= set(paths)


def _queue(engine, model: str, event_id: str, labeled_version_id: str) -> None:  # type: ignore[no-untyped-def]
    from airgate.core.warehouse import review_queue, utcnow

    with engine.begin() as conn:
        conn.execute(
            review_queue.insert().values(
                model=model,
                event_id=event_id,
                p=0.5,
                uncertainty=1.0,
                model_version="1",
                labeled_version_id=labeled_version_id,
                status="open",
                queued_at=utcnow(),
            )
        )


def test_review_answers_through_the_api(
    client: TestClient, sqlite_engine, spec, small_sim, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from airgate.data import clean, collect, labeling
    from tests.helpers import land

    collect.ingest(sqlite_engine, spec, land(small_sim, tmp_path, range(1)))
    clean.clean_pending(sqlite_engine, spec)
    first = labeling.label_pending(sqlite_engine, spec)
    unlabeled = (
        small_sim.batch(0).events.query("correct.isna() and response_time_ms >= 1000")["event_id"].tolist()
    )
    body = {"answers": [{"event_id": unlabeled[0], "label": 1}]}
    not_queued = client.post(
        f"/airgate/api/reviews/{spec.name}/answers", json=body, headers=bearer("approver", "op")
    )
    assert not_queued.status_code == 409 and unlabeled[0] in not_queued.json()["detail"]
    assert not_queued.json()["code"] == "not_queued"
    _queue(sqlite_engine, spec.name, unlabeled[0], first.labeled_version_id or "")
    owner = client.post(
        f"/airgate/api/reviews/{spec.name}/answers", json=body, headers=bearer("trainer", "op")
    )
    assert owner.status_code == 403 and owner.json()["code"] == "separation_of_duties"
    assert client.post(f"/airgate/api/reviews/{spec.name}/answers", json=body).status_code == 401
    viewer = client.post(
        f"/airgate/api/reviews/{spec.name}/answers", json=body, headers=bearer("viewer", "viewer")
    )
    assert viewer.status_code == 403
    ok = client.post(f"/airgate/api/reviews/{spec.name}/answers", json=body, headers=bearer("approver", "op"))
    assert ok.status_code == 200 and ok.json() == {"accepted": 1, "duplicates": 0}
    bad = client.post(
        f"/airgate/api/reviews/{spec.name}/answers",
        headers=bearer("approver", "op"),
        json={"answers": [{"event_id": "nope", "label": 1}]},
    )
    assert bad.status_code == 422 and "unknown event ids" in bad.text
    assert (
        client.get(f"/airgate/api/reviews/{spec.name}/queue", headers=bearer("viewer", "viewer")).json() == []
    )
    result = labeling.label_pending(sqlite_engine, spec)
    assert result.by_source.get("human") == 1


def test_audit_list_filters_pages_and_exports(client: TestClient, sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    import csv
    import io

    from airgate.core import audit

    for i in range(25):
        audit.record(
            sqlite_engine,
            actor="alice" if i % 2 else "<b>mallory</b>",
            event_type="decision",
            model="knowledge_tracing",
            entity={"model_version": str(i % 3)},
            details={"i": i},
        )
    assert client.get("/airgate/api/audit").status_code == 401
    h = bearer("viewer", "viewer")  # anyone signed in may audit
    first = client.get("/airgate/api/audit", params={"limit": 10}, headers=h).json()
    assert len(first["events"]) == 10 and first["next_before"] is not None
    second = client.get(
        "/airgate/api/audit", params={"limit": 10, "before": first["next_before"]}, headers=h
    ).json()
    assert {e["seq"] for e in first["events"]}.isdisjoint({e["seq"] for e in second["events"]})
    mine = client.get("/airgate/api/audit", params={"actor": "alice", "version": "1"}, headers=h).json()[
        "events"
    ]
    assert mine and all(e["actor"] == "alice" and e["entity"]["model_version"] == "1" for e in mine)
    assert client.get("/airgate/api/audit", params={"limit": 5000}, headers=h).status_code == 422
    r = client.get("/airgate/api/audit/export", params={"format": "csv", "actor": "alice"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(r.text)))) == 12
    r = client.get("/airgate/api/audit/export", params={"format": "json"}, headers=h)
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert len(r.text.strip().splitlines()) == audit.count(sqlite_engine)
    assert client.get("/airgate/api/audit/export", params={"format": "xml"}, headers=h).status_code == 422


def test_detail_tells_each_user_what_they_may_do_and_serves_the_evidence(
    client: TestClient,
    pending: dict,  # type: ignore[no-untyped-def]
    sqlite_engine,
    spec,
) -> None:
    from airgate.data import checks

    checks.validate_pending(sqlite_engine, spec)  # GX results and Data Docs for the clean versions
    url = f"/airgate/api/approvals/{pending['id']}"
    mine = client.get(url, headers=bearer("approver", "op")).json()
    assert mine["you"] == {"can_decide": True, "reason": None}
    assert client.get(url, headers=bearer("viewer", "viewer")).json()["you"]["can_decide"] is False
    trainer = client.get(url, headers=bearer("trainer", "op")).json()["you"]
    assert not trainer["can_decide"] and "separation of duties" in trainer["reason"]
    ctx = mine["context"]
    labels = ctx["labels"]
    assert labels["total"] == sum(labels["by_source"].values()) > 0 and 0 <= labels["auto_share"] <= 1
    assert (
        ctx["validation"]["status"] in ("pass", "warn")
        and ctx["versions"]["clean"]
        and ctx["versions"]["raw"]
    )
    h = bearer("viewer", "viewer")
    png = client.get(ctx["links"]["pareto_plot"], headers=h)
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    drift = client.get(ctx["links"]["drift_report"], headers=h)
    assert drift.status_code == 200 and drift.headers["content-type"].startswith("text/html")
    docs = client.get(ctx["validation"]["data_docs_url"], headers=h)
    assert docs.status_code == 200 and "html" in docs.text.lower()
    assert client.get(ctx["links"]["pareto_plot"]).status_code == 401
    assert client.get(f"{url}/artifacts/passwd", headers=h).status_code == 404
    for escape in ["../../../../etc/passwd", "..%2F..%2F..%2Fetc%2Fpasswd"]:
        assert client.get(f"/airgate/api/data-docs/knowledge_tracing/{escape}", headers=h).status_code == 404


def test_me_lists_what_the_user_may_govern(client: TestClient) -> None:
    me = client.get("/airgate/api/me", headers=bearer("approver", "op")).json()
    assert me["approver_of"] == ["knowledge_tracing"] and me["break_glass_of"] == []
    admin = client.get("/airgate/api/me", headers=bearer("admin", "admin")).json()
    assert admin["break_glass_of"] == ["knowledge_tracing"]
    assert client.get("/airgate/api/me", headers=bearer("viewer", "viewer")).json()["approver_of"] == []


def test_approvers_can_be_granted_in_airflow_config(client: TestClient, pending: dict, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert _decide(client, pending, bearer("dora", "viewer")).status_code == 403
    monkeypatch.setenv("AIRFLOW__AIRGATE__APPROVER_USERS", "dora")
    r = _decide(client, pending, bearer("dora", "viewer"))
    assert r.status_code == 200 and r.json()["status"] == "approved"


def test_rollback_and_revocation_through_the_api(
    client: TestClient,
    pending: dict,
    sqlite_engine,
    spec,  # type: ignore[no-untyped-def]
    mlflow_cfg,
) -> None:
    from tests.helpers import second_version

    assert _decide(client, pending, bearer("approver", "op")).status_code == 200
    v2 = promotion.get_request(sqlite_engine, second_version(sqlite_engine, spec, mlflow_cfg, pending["id"]))
    assert _decide(client, v2, bearer("approver", "op")).json()["status"] == "approved"
    url = f"/airgate/api/models/{spec.name}"
    body = {"to_version": pending["model_version"], "justification": "v2 regressed on grade 5"}
    assert client.post(f"{url}/rollback", json=body).status_code == 401
    refused = client.post(f"{url}/rollback", json=body, headers=bearer("viewer", "viewer"))
    assert refused.status_code == 403 and refused.json()["code"] == "not_approver"
    client.cookies.set("_token", token("approver", "op"))
    assert client.post(f"{url}/rollback", json=body).status_code == 403  # cookie without the CSRF header
    client.cookies.clear()
    proposed = client.post(f"{url}/rollback", json=body, headers=bearer("approver", "op"))
    assert proposed.status_code == 200, proposed.text
    p = proposed.json()
    assert (p["status"], p["to_version"], p["proposed_by"]) == (
        "pending",
        pending["model_version"],
        "approver",
    )
    assert {"approver", "trainer"} <= set(p["may_confirm"]["excluded"]) and p["may_confirm"]["roles"] == [
        "admin"
    ]
    assert registry.alias_version(mlflow_cfg, spec.name) == v2["model_version"]  # nothing moved yet
    mine = client.get(url, headers=bearer("approver", "op")).json()
    [shown] = mine["rollbacks"]
    assert (shown["id"], shown["can_confirm"], mine["you"]["can_confirm"]) == (p["proposal_id"], False, [])
    confirm = f"{url}/rollbacks/{p['proposal_id']}/confirm"
    for who, role in [("approver", "op"), ("trainer", "op")]:  # the proposer; the owner (and trainer)
        r = client.post(confirm, json={}, headers=bearer(who, role))
        assert (r.status_code, r.json()["code"]) == (403, "separation_of_duties"), who
    assert client.get(url, headers=bearer("admin", "admin")).json()["you"]["can_confirm"] == [
        p["proposal_id"]
    ]
    ok = client.post(confirm, json={"comment": "checked"}, headers=bearer("admin", "admin"))
    assert ok.status_code == 200 and ok.json()["status"] == "confirmed", ok.text
    assert registry.alias_version(mlflow_cfg, spec.name) == pending["model_version"]
    assert client.post(confirm, json={}, headers=bearer("dora", "admin")).json()["code"] == "not_pending"
    model = client.get(url, headers=bearer("approver", "op")).json()
    assert model["champion"]["version"] == pending["model_version"] and model["you"] == {
        "can_rollback": True,
        "can_revoke": False,
        "can_confirm": [],
    }
    assert model["rollbacks"] == []
    assert [e["action"] for e in model["ledger"]] == ["promote", "promote", "rollback"]
    assert {v["version"]: v["can_roll_back_to"] for v in model["versions"]} == {
        pending["model_version"]: False,
        v2["model_version"]: True,
    }
    revoke = {"version": pending["model_version"], "justification": "data leak found in v1 features"}
    assert client.post(f"{url}/revoke", json=revoke, headers=bearer("approver", "op")).status_code == 403
    gone = client.post(f"{url}/revoke", json=revoke, headers=bearer("admin", "admin"))
    assert gone.status_code == 200 and registry.alias_version(mlflow_cfg, spec.name) is None
    listed = client.get("/airgate/api/models", headers=bearer("viewer", "viewer")).json()
    assert listed == [
        {"model": spec.name, "owner": spec.owner, "champion": None, "pending": 0, "versions": 2}
    ]
    types = client.get("/airgate/api/audit/event-types", headers=bearer("viewer", "viewer")).json()
    assert {"promotion", "rollback", "revocation", "rollback_refused", "rollback_proposed"} <= set(types)


def test_lineage_and_as_of_through_the_api(client: TestClient, pending: dict, spec) -> None:
    h = bearer("viewer", "viewer")
    assert client.get("/airgate/api/lineage", params={"node": "bogus"}, headers=h).status_code == 422
    ref = f"model_version:{spec.name}/{pending['model_version']}"
    g = client.get("/airgate/api/lineage", params={"node": ref}, headers=h).json()
    assert g["focus"] == ref and {n["kind"] for n in g["nodes"]} >= {
        "training_run",
        "dataset",
        "file",
        "approval",
    }
    assert client.get("/airgate/api/lineage", params={"node": ref}).status_code == 401
    r = client.get(
        "/airgate/api/lineage/as-of",
        params={"model": spec.name, "at": "2020-01-01T00:00:00Z", "partition_key": "2026-09-03"},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["champion"] is None and r.json()["scoring_run"] is None
