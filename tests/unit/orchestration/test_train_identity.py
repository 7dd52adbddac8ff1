"""The train DAG's tasks read who trained from the run's identity record, never from an upstream XCom.

Each task's callable runs with a fake context (its own dag run) and the stage functions replaced by recorders, so
what a task hands the stage is checked without training anything.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from airgate.core.run_identity import load_identity, record_identity, training_run_id
from airgate.orchestration.dags import common, train_identity
from airgate.orchestration.dags import train as train_dag

pytestmark = pytest.mark.dag_structure

RUN = "manual__2026-12-01T00:00:00+00:00"
FORGED = {
    "training_run_id": "tr-knowledge_tracing-other",
    "labeled_version_id": "lab-evil",
    "trained_by": "mallory",
}


class _Stop(Exception):
    """Raised by a faked stage function once it has recorded what the task handed it."""


def _stop(*args: Any, **kwargs: Any) -> Any:
    raise _Stop


def _dag_run(user: str | None = "alice", run_type: str = "manual") -> Any:
    return types.SimpleNamespace(
        run_id=RUN, dag_id="knowledge_tracing__train", run_type=run_type, triggering_user_name=user, conf={}
    )


@pytest.fixture
def ctx(monkeypatch, sqlite_engine, mlflow_cfg, tmp_path):  # type: ignore[no-untyped-def]
    """A fake task context on a dag run triggered by alice, and the test's warehouse as the tasks' engine."""
    from airgate.core import settings

    box: dict[str, Any] = {"dag_run": _dag_run()}
    for mod in (train_identity, train_dag, common):
        monkeypatch.setattr(mod, "get_current_context", lambda: box)
    monkeypatch.setattr(settings, "warehouse_engine", lambda: sqlite_engine)
    monkeypatch.setattr(settings, "mlflow_config", lambda: mlflow_cfg)
    monkeypatch.setattr(settings, "runs_dir", lambda: str(tmp_path / "runs"))
    monkeypatch.setattr(settings, "code_version", lambda: "c")
    return box


def _callable(dag: Any, task_id: str) -> Any:
    t = dag.get_task(task_id)
    return getattr(t, "python_callable", None) or t.partial_kwargs["python_callable"]


def _prepare(spec, monkeypatch) -> Any:  # type: ignore[no-untyped-def]
    """Run prepare_split's callable with the split and the start decision faked."""
    from airgate.model import training
    from airgate.serving import retraining

    monkeypatch.setattr(
        retraining,
        "start_training",
        lambda *a, **kw: retraining.TrainingStart("train", "", kw["pinned"] or "lab-1"),
    )
    monkeypatch.setattr(
        training, "prepare", lambda engine, cfg: types.SimpleNamespace(rows=10, split_hash="s")
    )
    from airgate.orchestration.builders import build_train

    dag = build_train(spec)
    return dag, _callable(dag, "prepare_split")()


def test_prepare_split_records_the_runs_identity_once(ctx, spec, sqlite_engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, out = _prepare(spec, monkeypatch)
    ident = load_identity(sqlite_engine, training_run_id(spec.name, RUN))
    assert ident is not None and ident.triggered_by == "alice" and ident.run_type == "manual"
    assert ident.trained_by == out["trained_by"] == "alice" and ident.labeled_version_id == "lab-1"
    _, again = _prepare(spec, monkeypatch)  # a retry keeps the record (and the version it recorded)
    assert again == out and load_identity(sqlite_engine, ident.training_run_id) == ident


def test_a_rewritten_split_xcom_changes_no_identity(ctx, spec, sqlite_engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The attack: an op user rewrites prepare_split's XCom to name someone else as the trainer."""
    from airgate.governance import registration
    from airgate.model import gates, training

    dag, _ = _prepare(spec, monkeypatch)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(training, "load_result", lambda cfg, name: seen.setdefault("select", cfg))
    monkeypatch.setattr(training, "train_candidate", lambda eng, cfg, c: seen.setdefault("train", cfg))
    monkeypatch.setattr(training, "finalize", _stop)

    with pytest.raises(_Stop):
        _callable(dag, "select_and_test")(split=FORGED, trained=[])
    with pytest.raises(AttributeError):  # the fake result has no .xcom(): the cfg was recorded first
        _callable(dag, "train_candidate")(split=FORGED, candidate=spec.candidates[0].name)
    own = training_run_id(spec.name, RUN)
    for cfg in (seen["select"], seen["train"]):
        assert (cfg.trained_by, cfg.training_run_id, cfg.labeled_version_id) == ("alice", own, "lab-1")

    def fake_validate(engine, spec, cfg, run_id, runs_dir, actor):  # type: ignore[no-untyped-def]
        seen["validate"] = run_id
        return types.SimpleNamespace(approvable=True, training_run_id=run_id, evidence_hash="h", gates=[])

    monkeypatch.setattr(gates, "validate", fake_validate)
    _callable(dag, "validate")(trained=FORGED)
    monkeypatch.setattr(
        registration,
        "register_and_request",
        lambda eng, spec, cfg, run_id, **kw: seen.update(reg=(run_id, kw)),
    )
    _callable(dag, "register_and_request_approval")(validated=FORGED)
    assert seen["validate"] == own and seen["reg"][0] == own and seen["reg"][1]["require_identity"] is True


def test_a_task_of_a_run_without_a_record_fails(ctx, spec) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk.exceptions import AirflowFailException

    from airgate.orchestration.builders import build_train

    with pytest.raises(AirflowFailException, match="no identity record"):
        _callable(build_train(spec), "select_and_test")(split=FORGED, trained=[])


def test_dag_test_runs_are_the_owners_and_scheduled_runs_say_so(spec, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Airflow's dag.test() names its run's user "dag_test" (nobody authenticated): the owner answers for it."""
    monkeypatch.setattr(train_identity, "_in_dag_test", lambda: True)
    ident = train_identity.identity_of_run(spec, _dag_run(user="dag_test"), "lab-1")
    assert (ident.triggered_by, ident.run_type, ident.trained_by) == (None, "dag_test", spec.owner)
    sched = train_identity.identity_of_run(spec, _dag_run(user=None, run_type="scheduled"), "lab-1")
    assert (sched.triggered_by, sched.run_type, sched.trained_by) == (None, "scheduled", spec.owner)
    monkeypatch.setattr(train_identity, "_in_dag_test", lambda: False)
    # Outside dag.test a user really called dag_test is that user.
    assert train_identity.identity_of_run(spec, _dag_run(user="dag_test"), "lab-1").triggered_by == "dag_test"


def test_outside_dag_test_the_in_process_check_is_false() -> None:
    assert train_identity._in_dag_test() is False


def test_the_pod_reads_its_trainer_from_the_record(ctx, sqlite_engine, spec, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``train-candidate`` (the Kubernetes pod) takes only ids: trainer and version come from the record."""
    from airgate.model import candidates

    run_id = training_run_id(spec.name, RUN)
    manifest = types.SimpleNamespace(labeled_version_id="lab-evil", trained_by="mallory", code_version="c")
    monkeypatch.setattr(candidates, "read_manifest", lambda path: manifest)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(candidates, "train_candidate", lambda eng, cfg, c: _stop(seen.setdefault("cfg", cfg)))
    with pytest.raises(RuntimeError, match="no identity record"):
        candidates.train_candidate_from_env(spec.name, run_id, spec.candidates[0].name)
    record_identity(sqlite_engine, train_identity.identity_of_run(spec, _dag_run(), "lab-1"))
    with pytest.raises(_Stop):
        candidates.train_candidate_from_env(spec.name, run_id, spec.candidates[0].name)
    assert (seen["cfg"].trained_by, seen["cfg"].labeled_version_id) == ("alice", "lab-1")
