"""The lifecycle under real Airflow: each stage's DAG runs with dag.test() against a SQLite warehouse.

dag.test() does not create asset-triggered runs, so the test runs each consumer in the order the Assets chain them,
as the scheduler would. The approval goes through the plugin's HTTP API with a real Airflow JWT.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from airgate.core import audit, registry
from airgate.core.warehouse import (
    clean_events,
    labels,
    make_engine,
    predictions,
    quarantine,
    raw_rows,
    scoring_runs,
)
from airgate.governance import promotion
from airgate.orchestration.dags.approval_step import DAG_TEST_MARK_SUCCESS
from airgate.orchestration.localrun import dag_test
from tests.helpers import REPO_ROOT, migrated_sqlite

pytestmark = pytest.mark.e2e
MODEL = "knowledge_tracing"


@pytest.fixture
def env(airflow_db, tmp_path: Path, monkeypatch, small_sim):  # type: ignore[no-untyped-def]
    home = tmp_path / "airgate"
    monkeypatch.setenv("AIRGATE_HOME", str(home))
    wh = migrated_sqlite(home / "warehouse.db")
    monkeypatch.setenv("AIRFLOW_CONN_AIRGATE_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(wh)}))
    cfg = registry.MlflowConfig.under(home)
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRGATE_MLFLOW",
        json.dumps(
            {
                "conn_type": "generic",
                "extra": {"tracking_uri": cfg.tracking_uri, "artifact_root": cfg.artifact_root},
            }
        ),
    )
    from airgate.dev.simulator import write_catalog

    write_catalog(small_sim, home / "catalog" / "knowledge_tracing_items.csv")
    for b in range(2):
        small_sim.write_batch(
            b,
            home / "landing" / MODEL,
            home / "oracle",
            roster_path=home / "catalog" / "knowledge_tracing_students.csv",
        )
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert not bag.import_errors
    return {"dags": bag.dags, "wh": f"sqlite:///{wh}", "mlflow": cfg}


def run(env, stage: str, **kw) -> object:  # type: ignore[no-untyped-def]
    """One stage under dag.test(). The train DAG's await_approval would wait inline for a decision nobody makes
    meanwhile: it and confirm_champion are marked success, and the test decides afterwards through the API."""
    if stage == "train":
        kw.setdefault("mark_success_pattern", DAG_TEST_MARK_SUCCESS)
    dr = dag_test(env["dags"][f"{MODEL}__{stage}"], **kw)
    assert str(dr.state) == "success", f"{stage}: {dr.state}"
    return dr


def train_chain(env) -> None:  # type: ignore[no-untyped-def]
    """collect -> clean -> label -> train, in the order their Assets chain them."""
    for stage in ("collect", "clean", "label", "train"):
        run(env, stage)


def counts(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (raw_rows, clean_events, quarantine, labels, predictions)
        }


def approve_via_api(engine, req: dict) -> None:  # type: ignore[no-untyped-def]
    from airflow.api_fastapi.app import get_auth_manager, init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from airgate.web.app import mounted_app

    init_auth_manager()
    jwt = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="approver", role="op"))
    r = TestClient(mounted_app()).post(
        f"/airgate/api/approvals/{req['id']}/decisions",
        headers={"Authorization": f"Bearer {jwt}"},
        json={"decision": "approve", "comment": "e2e", "evidence_hash": req["evidence_hash"]},
    )
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text


def approve_when_requested(engine, errors: list[BaseException], timeout_s: float = 900) -> threading.Thread:  # type: ignore[no-untyped-def]
    """A second user who approves through the API as soon as the train run's request is open (while the run's
    await_approval polls it inline under dag.test)."""

    def approver() -> None:
        try:
            deadline = time.monotonic() + timeout_s
            while not (reqs := promotion.list_requests(engine, model=MODEL, status="pending")):
                assert time.monotonic() < deadline, "no approval request opened"
                time.sleep(0.5)
            assert reqs[0]["gates"]["beats_baseline"] == "pass"
            approve_via_api(engine, reqs[0])
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=approver, daemon=True)
    thread.start()
    return thread


def test_lifecycle_lands_a_scored_table_and_reruns_add_nothing(env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for stage in ("collect", "clean", "label"):
        run(env, stage)
    engine = make_engine(env["wh"])
    # The train run itself waits for the decision (await_approval, deferred, its trigger inline) and confirms it.
    monkeypatch.setenv("AIRGATE_APPROVAL_POLL_SECONDS", "0.5")
    errors: list[BaseException] = []
    approver = approve_when_requested(engine, errors)
    train_run = run(env, "train", mark_success_pattern=None)
    approver.join(timeout=60)
    assert not errors, errors
    states = {ti.task_id: str(ti.state) for ti in train_run.get_task_instances()}  # type: ignore[attr-defined]
    assert (states["await_approval"], states["confirm_champion"]) == ("success", "success"), states
    reqs = promotion.list_requests(engine, model=MODEL)
    assert [r["status"] for r in reqs] == ["approved"]
    deployed = audit.events(engine, event_type="deployed")
    assert [(d["entity"]["approval_request_id"], d["entity"]["model_version"]) for d in deployed] == [
        (reqs[0]["id"], reqs[0]["model_version"])
    ]
    assert registry.alias_version(env["mlflow"], MODEL) == reqs[0]["model_version"]
    score_run = run(env, "score")

    with engine.connect() as conn:
        rows = conn.execute(select(predictions)).mappings().all()
    assert rows and {r["model_version"] for r in rows} == {reqs[0]["model_version"]}
    assert {r["approval_id"] for r in rows} == {reqs[0]["id"]}
    with engine.connect() as conn:
        sr = conn.execute(select(scoring_runs)).mappings().one()
    # the run records the champion it resolved once, the Airflow run it belongs to, and its shards
    assert {r["scoring_run_id"] for r in rows} == {sr["run_id"]} and sr["status"] == "succeeded"
    assert sr["airflow_run_id"] == score_run.run_id and sr["rows_scored"] == len(rows)  # type: ignore[attr-defined]
    shards = [ti for ti in score_run.get_task_instances() if ti.task_id == "score_partition"]  # type: ignore[attr-defined]
    assert len(shards) == sr["shards"] == 2 and {str(ti.state) for ti in shards} == {"success"}
    assert {r["shard"] for r in rows} == {0, 1}
    first = counts(engine)
    assert first["raw_rows"] == first["clean_events"] + first["quarantine"]
    # after scoring, the drift check ran against the champion's validation split: same data, no alarm, no retrain
    states = {ti.task_id: str(ti.state) for ti in score_run.get_task_instances()}  # type: ignore[attr-defined]
    assert (states["monitor_drift"], states["request_retraining"]) == ("success", "skipped"), states
    checks = audit.events(engine, event_type="drift_check")
    assert [c["details"]["status"] for c in checks] == ["ok"], checks

    # The whole chain again on the same data: nothing is duplicated or lost.
    run(
        env, "collect", mark_success_pattern="wait_for_new_files"
    )  # the sensor would wait: nothing new landed
    run(env, "clean")
    run(env, "label")
    run(env, "score", logical_date=score_run.logical_date)  # type: ignore[attr-defined]
    assert counts(engine) == first  # the re-run of the date replaced its predictions: one set, not two
    with engine.connect() as conn:
        statuses = sorted(conn.execute(select(scoring_runs.c.status)).scalars())
    assert statuses == ["succeeded", "superseded"]
    types = [e["event_type"] for e in audit.events(engine, model=MODEL)]
    for expected in (
        "ingest",
        "clean",
        "label",
        "train",
        "gate",
        "register",
        "approval_requested",
        "decision",
        "promotion",
        "scoring_run",
    ):
        assert expected in types, expected
    assert types.index("promotion") < types.index("scoring_run")
    # a retrain trigger (drift, decay, the cron) with no new labeled data: same data, spec and code, same model;
    # the train DAG says so instead of asking approvers to approve the same model twice
    again = run(env, "train")
    assert {ti.task_id: str(ti.state) for ti in again.get_task_instances()}["prepare_split"] == "skipped"  # type: ignore[attr-defined]
    skipped = audit.events(engine, event_type="training_skipped")
    assert len(skipped) == 1 and "already trained" in skipped[0]["details"]["reason"]
    assert len(promotion.list_requests(engine, model=MODEL)) == 1
    assert audit.verify_chain(engine).ok


def test_scoring_dag_refuses_an_unapproved_champion(env) -> None:  # type: ignore[no-untyped-def]
    train_chain(env)
    engine = make_engine(env["wh"])
    req = promotion.list_requests(engine, model=MODEL, status="pending")[0]
    pinned = env["dags"][f"{MODEL}__train"].test(run_conf={"labeled_version_id": "labeled-does-not-exist"})
    assert (
        str(pinned.state) == "failed"
    )  # a run pinned to a version that is not there fails, it does not guess
    registry.set_alias(env["mlflow"], MODEL, req["model_version"])  # bypassing approval
    dr = dag_test(env["dags"][f"{MODEL}__score"])
    assert str(dr.state) == "failed"
    refused = audit.events(engine, event_type="scoring_refused")
    assert refused and "not show it as the approved champion" in refused[0]["details"]["reason"]
    assert counts(engine)["predictions"] == 0
