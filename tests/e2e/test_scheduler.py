"""The whole lifecycle under a running Airflow, one process per task, with nobody driving the DAGs.

The scheduler, dag-processor, triggerer and api-server run as separate processes (``airgate.dev.devstack``): on
LocalExecutor with SQLite (the embedded default), and on CeleryExecutor with Redis as broker and PostgreSQL as
metadata DB, warehouse and MLflow store, with two workers whose local folders differ, so that they share nothing but
the databases and the object store (``AIRGATE_STORAGE_URL``). The test only does what people and the outside world
do: it unpauses the DAGs, lands files, approves through the plugin's API as a signed-in approver, and starts the
nightly score run when the night comes (its cron is not waited for). Everything else must happen by itself: the
sensor defers and fires in the triggerer, the Asset-triggered clean, label, train and monitor runs start, the
candidates train as mapped tasks, the first night without a champion is skipped and recorded, a drift batch starts
retraining, and the second approval switches scoring. States are read through Airflow's REST API; the story is read
from the audit log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from airgate.core import audit
from airgate.core.warehouse import make_engine, predictions
from airgate.dev.devstack import AirflowApi, Stack, StackConfig, StackError
from airgate.dev.simulator import SimConfig, Simulator, write_catalog
from tests.conftest import PG_ADMIN_URL
from tests.helpers import REPO_ROOT

# One whole Airflow at a time: make test distributes by file (pytest-xdist --dist loadfile).
pytestmark = [pytest.mark.scheduler, pytest.mark.timeout(2400)]
ROOT = REPO_ROOT
MODEL = "knowledge_tracing"
STAGES = ("collect", "clean", "label", "train", "score", "monitor")
APPROVAL_POLL_S = "2"  # the await_approval trigger's poll (default 30 s): the story need not wait for it
NEW_COHORT_BATCH = 2
CHAIN_TIMEOUT_S = 1200  # bounded waits: a stall fails with every component's log tail, never hangs


def _spec(folder: Path) -> Path:
    """The shipped spec with a short tuning budget; AUC alone (no wall-clock objective or constraint), so a loaded
    machine trains the same model. The source (a continuous collect DAG, its sensor) and the schedules are the
    shipped ones."""
    raw = yaml.safe_load((ROOT / "include" / "specs" / f"{MODEL}.yaml").read_text())
    raw["objectives"] = [{"metric": "auc", "direction": "maximize"}]
    raw["constraints"] = []
    raw["tuning"]["n_trials"] = 3
    for cand in raw["candidates"]:
        if cand["kind"] == "dkt":
            cand["n_trials"] = 1
            cand["params"]["epochs"] = 4
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{MODEL}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@dataclass
class Deployment:
    stack: Stack
    warehouse_url: str
    storage: Path  # the local folder behind the file:// store the test lands files in
    sim: Simulator

    def land(self, batch: int) -> None:
        self.sim.write_batch(
            batch,
            self.storage / "landing" / MODEL,
            self.storage / "oracle",
            roster_path=self.storage / "catalog" / f"{MODEL}_students.csv",
        )


def _sim(storage: Path) -> Simulator:
    sim = Simulator(
        SimConfig(
            students_per_batch=120,
            events_per_student=40,
            new_cohort_from_batch=NEW_COHORT_BATCH,
            cohort_shift=-1.0,
        )
    )
    write_catalog(sim, storage / "catalog" / f"{MODEL}_items.csv")
    return sim


def _pg_database(tag: str) -> str:
    from sqlalchemy import create_engine, text

    name = f"airgate_{tag}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_pg_database(url: str) -> None:
    from sqlalchemy import create_engine, text

    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _start(stack: Stack) -> Stack:
    try:
        return stack.start()
    except BaseException:
        stack.stop()
        raise


@pytest.fixture
def local_deployment(tmp_path: Path) -> Iterator[Deployment]:
    """LocalExecutor, SQLite everywhere, local folders: the embedded default, as ``make up`` serves it."""
    home = tmp_path / "airgate"
    (tmp_path / "specs").mkdir()
    # A second model whose spec is broken (a cron with an hour 25) sits beside the good one all along.
    (tmp_path / "specs" / "broken_model.yaml").write_text(
        (ROOT / "include" / "specs" / f"{MODEL}.yaml")
        .read_text()
        .replace(f"name: {MODEL}", "name: broken_model", 1)
        .replace('schedule: "0 2 * * *"', 'schedule: "0 25 * * *"', 1)
    )
    settings = {
        "AIRGATE_HOME": str(home),
        "AIRGATE_SPECS_DIR": str(_spec(tmp_path / "specs").parent),
        "AIRGATE_WAREHOUSE_URL": f"sqlite:///{home / 'warehouse.db'}",
        "AIRGATE_MLFLOW_URI": f"sqlite:///{home / 'mlflow.db'}",
        "AIRGATE_MLFLOW_ARTIFACTS": str(home / "mlartifacts"),
        "AIRGATE_APPROVAL_POLL_SECONDS": APPROVAL_POLL_S,
    }
    sim = _sim(home)
    stack = _start(Stack(StackConfig(tmp_path / "airflow", settings)))
    try:
        yield Deployment(stack, settings["AIRGATE_WAREHOUSE_URL"], home, sim)
    finally:
        stack.stop()


@pytest.fixture
def celery_deployment(tmp_path: Path) -> Iterator[Deployment]:
    """CeleryExecutor on Redis; PostgreSQL for Airflow's metadata, the warehouse and MLflow; files on an object store
    (a file:// base) that only the storage layer addresses. Two workers, each with its own local AIRGATE_HOME."""
    metadata, warehouse, mlflow_db = (_pg_database(t) for t in ("airflow", "wh", "mlflow"))
    store = tmp_path / "objstore"
    store.mkdir()
    settings = {
        "AIRGATE_HOME": str(tmp_path / "host-main"),
        "AIRGATE_SPECS_DIR": str(_spec(tmp_path / "specs").parent),
        "AIRGATE_WAREHOUSE_URL": warehouse,
        "AIRGATE_MLFLOW_URI": mlflow_db,
        "AIRGATE_MLFLOW_ARTIFACTS": f"{store.as_uri()}/mlartifacts",
        "AIRGATE_STORAGE_URL": store.as_uri(),
        "AIRGATE_APPROVAL_POLL_SECONDS": APPROVAL_POLL_S,
    }
    sim = _sim(store)
    redis_db = 1 + uuid.uuid4().int % 14
    cfg = StackConfig(
        tmp_path / "airflow",
        settings,
        executor="CeleryExecutor",
        metadata_url=metadata,
        broker_url=f"redis://127.0.0.1:6379/{redis_db}",
        result_backend=f"db+{metadata}",
        workers=[{"AIRGATE_HOME": str(tmp_path / f"host-{i}")} for i in range(2)],
        parallelism=2,
    )
    stack = None
    try:
        stack = _start(Stack(cfg))
        yield Deployment(stack, warehouse, store, sim)
    finally:
        if stack is not None:
            stack.stop()
        import redis

        redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
        for url in (metadata, warehouse, mlflow_db):
            _drop_pg_database(url)


# ---------------------------------------------------------------------------------------------- REST helpers


class Airflow(AirflowApi):
    """What the test reads and does through Airflow's REST API and the plugin's, as signed-in users."""

    def __init__(self, d: Deployment) -> None:
        super().__init__(d.stack, MODEL)
        self.d = d

    def wait_run(self, stage: str, run_id: str, timeout: float = CHAIN_TIMEOUT_S) -> dict[str, Any]:
        return super().wait_run(stage, run_id, timeout)

    def wait_request(self, version: str) -> dict[str, Any]:
        """The approval request for ``version``, once the chain has opened it; a failed run fails at once."""

        def probe() -> dict[str, Any] | None:
            failed = self.failed_runs(STAGES)
            if failed:
                raise StackError(
                    f"runs failed: {failed} "
                    f"{[(s, r, self.states(s, r)) for s, ids in failed.items() for r in ids]}\n"
                    + self.d.stack.tails()
                )
            return next((q for q in self.pending_requests() if q["model_version"] == version), None)

        return dict(
            self.d.stack.wait_for(probe, CHAIN_TIMEOUT_S, f"an approval request for v{version}", every=3)
        )

    def awaiting_approval(self) -> str:
        """The train run that sits deferred on await_approval (no worker slot held) once its request is open."""

        def probe() -> str | None:
            for run in self.dag_runs("train"):
                if run["state"] == "running" and self.states("train", run["dag_run_id"]).get(
                    "await_approval"
                ) == ["deferred"]:
                    return str(run["dag_run_id"])
            return None

        return str(self.d.stack.wait_for(probe, 300, "a train run deferred on await_approval", every=2))

    def approve_and_deploy(self, request: dict[str, Any]) -> str:
        """Approve as a second user through the plugin; the waiting train run then confirms the champion."""
        train_run = self.awaiting_approval()
        assert self.approve(request)["status"] == "approved"
        self.wait_run("train", train_run, timeout=300)
        states = self.states("train", train_run)
        assert (states["await_approval"], states["confirm_champion"]) == (["success"], ["success"]), states
        return train_run


def _events(url: str) -> list[dict[str, Any]]:
    engine = make_engine(url)
    try:
        return list(audit.events(engine, model=MODEL, limit=100000))
    finally:
        engine.dispose()


def _scored_versions(url: str, scoring_run_id: str | None = None) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            q = select(predictions.c.model_version).distinct()
            if scoring_run_id:
                q = q.where(predictions.c.scoring_run_id == scoring_run_id)
            return {str(v) for v in conn.execute(q).scalars()}
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------- the story


def run_lifecycle(d: Deployment) -> dict[str, Any]:
    af = Airflow(d)
    d.stack.wait_for(lambda: af.parsed(STAGES), 240, "the dag-processor to parse the DAGs")
    af.unpause(STAGES)

    # Unpausing starts the latest cron tick of each scheduled DAG. The sensor of the collect tick waits deferred.
    def deferred_sensor() -> str | None:
        for run in af.dag_runs("collect"):
            states = af.states("collect", run["dag_run_id"])
            if states.get("wait_for_new_files") == ["deferred"]:
                return str(run["dag_run_id"])
        return None

    collect_run = d.stack.wait_for(deferred_sensor, 300, "the landing-zone sensor to defer", every=2)
    d.land(0)
    d.land(1)
    assert af.wait_run("collect", collect_run)
    assert af.states("collect", collect_run) == {"wait_for_new_files": ["success"], "ingest": ["success"]}

    # clean -> label -> (no champion yet) retrain -> train, all started by Asset events.
    first = af.wait_request("1")
    # The night that came before any approval: skipped and recorded, not failed, and nobody paged.
    score_ticks = af.dag_runs("score")
    assert score_ticks and all(r["state"] == "success" for r in score_ticks), score_ticks
    assert af.states("score", score_ticks[0]["dag_run_id"])["plan"] == ["skipped"]
    af.approve_and_deploy(first)

    night1 = af.trigger("score")
    af.wait_run("score", night1)
    assert _scored_versions(d.warehouse_url) == {"1"}

    # A batch of a new cohort lands; the collect tick running by then picks it up; labels follow, and the champion
    # is not retrained merely because labels arrived.
    labeled_before = sum(1 for e in _events(d.warehouse_url) if e["event_type"] == "label")
    d.land(NEW_COHORT_BATCH)
    d.stack.wait_for(
        lambda: sum(1 for e in _events(d.warehouse_url) if e["event_type"] == "label") > labeled_before,
        CHAIN_TIMEOUT_S,
        "the drift batch to be labeled",
        every=3,
    )
    label_runs = af.dag_runs("label")
    d.stack.wait_for(
        lambda: all(r["state"] in ("success", "failed") for r in af.dag_runs("label")),
        300,
        "the label runs to finish",
    )
    assert label_runs

    night2 = af.trigger("score")
    af.wait_run("score", night2)
    assert af.states("score", night2)["request_retraining"] == ["success"]
    second = af.wait_request("2")
    af.approve_and_deploy(second)
    night3 = af.trigger("score")
    af.wait_run("score", night3)

    events = _events(d.warehouse_url)
    run3 = next(e for e in reversed(events) if e["event_type"] == "scoring_run")["entity"]["scoring_run_id"]
    return {"af": af, "events": events, "night3_scoring_run": run3}


def assert_story(d: Deployment, out: dict[str, Any]) -> None:
    af: Airflow = out["af"]
    events = out["events"]
    types = [e["event_type"] for e in events]
    # No run of any DAG failed; all but the collect run waiting for the next file have finished.
    assert af.failed_runs(STAGES) == {}
    for s in STAGES:
        unfinished = [r["dag_run_id"] for r in af.dag_runs(s) if r["state"] != "success"]
        assert unfinished == [] if s != "collect" else len(unfinished) <= 1, (s, unfinished)
    trained = [
        r
        for r in af.dag_runs("train")
        if af.states("train", r["dag_run_id"]).get("select_and_test") == ["success"]
    ]
    assert len(trained) == 2, [af.states("train", r["dag_run_id"]) for r in af.dag_runs("train")]
    for r in trained:
        assert r["run_type"] == "asset_triggered"
        states = af.states("train", r["dag_run_id"])
        assert states["train_candidate"] == ["success"] * 3
        assert (states["await_approval"], states["confirm_champion"]) == (["success"], ["success"]), states
    # each approved version was confirmed by its own train run: the ledger's champion and the alias agreed
    assert [e["entity"]["model_version"] for e in events if e["event_type"] == "deployed"] == ["1", "2"]
    # Each trigger did its work once: the first training was asked for by the labels (no champion), the second by
    # the drift alarm; nothing was trained twice or skipped as already trained.
    requested = [(e["details"]["reason"]) for e in events if e["event_type"] == "retraining_requested"]
    assert requested == ["no_champion", "drift"], requested
    assert "training_skipped" not in types
    # The unpause tick's deadline had passed before the run was queued: the executor ran the deadline callback,
    # which reached the warehouse from its own environment (the Execution API refuses it connections) and waived it.
    assert "scoring_skipped" in types and "deadline_waived" in types and "deadline_missed" not in types
    # Approvals came from the signed-in approver through the plugin, on runs Airflow attributed to the spec owner.
    decisions = [e for e in events if e["event_type"] == "decision"]
    assert [(e["actor"], e["details"].get("decision")) for e in decisions] == [("approver", "approve")] * 2, (
        decisions
    )
    assert [e["details"]["to_version"] for e in events if e["event_type"] == "promotion"] == ["1", "2"]
    assert _scored_versions(d.warehouse_url, out["night3_scoring_run"]) == {"2"}
    engine = make_engine(d.warehouse_url)
    try:
        assert audit.verify_chain(engine).ok
    finally:
        engine.dispose()


def test_lifecycle_runs_by_itself_on_local_executor(local_deployment: Deployment) -> None:
    out = run_lifecycle(local_deployment)
    assert_story(local_deployment, out)
    assert_broken_spec_reported_alone(local_deployment)


def assert_broken_spec_reported_alone(d: Deployment) -> None:
    """The broken spec beside the good one: reported in Airflow's DAG import errors (its file, field and fix)
    under the errors-only DAG file, while every DAG of the good model stayed scheduled and ran (above)."""
    admin = Airflow(d).admin
    errors = admin.get("/api/v2/importErrors").raise_for_status().json()["import_errors"]
    assert [e["filename"] for e in errors] == ["airgate_spec_errors.py"], errors
    assert (
        "broken_model.yaml:\n  - field 'scoring.schedule': '0 25 * * *' is not a valid cron"
        in errors[0]["stack_trace"]
    )
    dags = admin.get("/api/v2/dags", params={"limit": 100}).raise_for_status().json()["dags"]
    assert sorted(x["dag_id"] for x in dags) == sorted(f"{MODEL}__{s}" for s in STAGES)
    assert not any(x["has_import_errors"] or x["is_stale"] for x in dags), dags


@pytest.mark.postgres
@pytest.mark.celery
def test_lifecycle_runs_by_itself_on_celery_with_shared_nothing_workers(
    celery_deployment: Deployment, tmp_path: Path
) -> None:
    out = run_lifecycle(celery_deployment)
    assert_story(celery_deployment, out)
    # Both workers took tasks, each with a local folder of its own: they shared only the databases and the store.
    worker_logs = [c.tail(10**7) for c in celery_deployment.stack.components if c.name.startswith("worker-")]
    assert len(worker_logs) == 2 and all("succeeded" in log for log in worker_logs), [
        log[-1500:] for log in worker_logs
    ]
    assert not list((tmp_path / "host-0").glob("runs/**/*.parquet")) and not list(
        (tmp_path / "host-1").glob("runs/**/*.parquet")
    )
