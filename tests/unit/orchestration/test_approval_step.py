"""Approval as a step of the train DAG: await_approval defers on its run's request and follows the decision;
confirm_champion checks the ledger and the alias; the run page gets an "Approval" tab."""

from __future__ import annotations

import asyncio
import types
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from airgate.core import audit
from airgate.core.run_identity import training_run_id
from airgate.core.warehouse import approval_requests, utcnow

RUN = "manual__2026-03-01T12:00:00+00:00"


@pytest.fixture
def wh(sqlite_engine, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AIRGATE_WAREHOUSE_URL", str(sqlite_engine.url))
    monkeypatch.setenv("AIRGATE_APPROVAL_POLL_SECONDS", "0.05")
    return sqlite_engine


def _open(engine, spec, status: str = "pending", hours: float = 1, age_h: float = 0) -> str:  # type: ignore[no-untyped-def]
    created = utcnow() - timedelta(hours=age_h)
    with engine.begin() as conn:
        conn.execute(
            approval_requests.insert().values(
                id="apr-run",
                model=spec.name,
                model_version="4",
                training_run_id=training_run_id(spec.name, RUN),
                evidence_hash="h" * 64,
                evidence={},
                requested_by="carol",
                owner=spec.owner,
                quorum=1,
                status=status,
                created_at=created,
                expires_at=created + timedelta(hours=hours),
            )
        )
    return "apr-run"


def _set(engine, status: str) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(update(approval_requests).values(status=status, decided_at=utcnow()))


def _operator(spec):  # type: ignore[no-untyped-def]
    from airgate.orchestration.dags.approval_step import AwaitApprovalOperator

    return AwaitApprovalOperator(task_id="await_approval", spec=spec)


CTX: dict[str, Any] = {"dag_run": types.SimpleNamespace(run_id=RUN)}


# ------------------------------------------------------------------------------------------- the DAG


@pytest.mark.dag_structure
def test_the_train_dag_waits_for_approval_then_confirms_the_champion() -> None:
    from airflow.dag_processing.dagbag import DagBag

    from tests.helpers import REPO_ROOT

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags")).dags["knowledge_tracing__train"]
    wait, confirm = dag.get_task("await_approval"), dag.get_task("confirm_champion")
    assert wait.upstream_task_ids == {"register_and_request_approval"}
    assert confirm.upstream_task_ids == {"await_approval"} and not confirm.downstream_task_ids
    assert type(wait).__name__ == "AwaitApprovalOperator" and wait.pool != "airgate_training"


# ------------------------------------------------------------------------------------------- await_approval


def test_a_pending_request_defers_with_the_expiry_as_timeout(wh, spec) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk.exceptions import TaskDeferred

    _open(wh, spec, hours=10)
    with pytest.raises(TaskDeferred) as deferred:
        _operator(spec).execute(CTX)
    trigger = deferred.value.trigger
    path, kwargs = trigger.serialize()
    assert path == "airgate.orchestration.approval_trigger.ApprovalDecisionTrigger"
    assert kwargs["training_run_id"] == training_run_id(spec.name, RUN) and kwargs["warned"] is False
    assert deferred.value.method_name == "resume"
    assert timedelta(hours=9, minutes=59) < deferred.value.timeout <= timedelta(hours=10, minutes=5)


def test_the_request_comes_from_the_warehouse_not_from_an_xcom(wh, spec) -> None:  # type: ignore[no-untyped-def]
    """Another run's approved request (whatever an XCom says) does not let this run through."""
    _open(wh, spec, status="approved")
    other = {"dag_run": types.SimpleNamespace(run_id="manual__other"), "ti": None}
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="no approval request"):
        _operator(spec).execute(other)


def test_approved_returns_rejected_skips_expired_fails(wh, spec) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    _open(wh, spec, status="approved")
    assert _operator(spec).execute(CTX) == {
        "request_id": "apr-run",
        "model_version": "4",
        "status": "approved",
    }
    _set(wh, "rejected")
    with pytest.raises(AirflowSkipException, match="rejected"):
        _operator(spec).execute(CTX)
    _set(wh, "superseded")
    with pytest.raises(AirflowSkipException, match="superseded"):
        _operator(spec).execute(CTX)
    _set(wh, "pending")
    with engine_expired(wh):
        with pytest.raises(AirflowFailException, match="expired"):
            _operator(spec).execute(CTX)


class engine_expired:  # noqa: N801 - reads as a phrase in the test
    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine

    def __enter__(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(approval_requests).values(expires_at=utcnow() - timedelta(seconds=1)))

    def __exit__(self, *exc: object) -> None:
        return None


def test_about_to_expire_notifies_then_defers_again(wh, spec, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk.exceptions import TaskDeferred

    from airgate.core.spec import AlertTarget

    out = tmp_path / "gov.jsonl"
    target = AlertTarget(notifier="airgate.notifiers.LogNotifier", kwargs={"path": str(out)})
    gspec = spec.model_copy(update={"alerts": spec.alerts.model_copy(update={"on_governance": [target]})})
    _open(wh, gspec, hours=10, age_h=9.5)  # 30 min of 10 h left: inside the last 10 %
    with pytest.raises(TaskDeferred) as deferred:
        _operator(gspec).execute(CTX)
    assert deferred.value.trigger.serialize()[1]["warned"] is True
    kinds = [e["entity"]["kind"] for e in audit.events(wh, event_type="alert_sent")]
    assert kinds == ["approval_requested", "approval_expiring"]
    _set(wh, "approved")
    event = {"outcome": "approved", "reason": "approved", "request_id": "apr-run", "model_version": "4"}
    assert _operator(gspec).resume(CTX, event=event)["status"] == "approved"
    assert [e["entity"]["kind"] for e in audit.events(wh, event_type="alert_sent")][-1] == "approval_decided"


# ------------------------------------------------------------------------------------------- the trigger


def test_the_trigger_fires_once_the_request_is_decided(wh, spec) -> None:  # type: ignore[no-untyped-def]
    from airgate.orchestration.approval_trigger import ApprovalDecisionTrigger

    _open(wh, spec, hours=10)
    trigger = ApprovalDecisionTrigger(training_run_id(spec.name, RUN), 0.1, poll_interval=0.05)

    async def scenario() -> Any:
        gen = trigger.run()
        first = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0.3)
        assert not first.done()  # still pending: the trigger keeps polling
        await asyncio.to_thread(_set, wh, "approved")
        return await asyncio.wait_for(first, timeout=10)

    event = asyncio.run(scenario())
    assert event.payload["outcome"] == "approved" and event.payload["request_id"] == "apr-run"


# ------------------------------------------------------------------------------------------- confirm_champion


def test_confirm_champion_checks_ledger_and_alias_and_audits_deployed(wh, spec, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk.exceptions import AirflowFailException

    from airgate.core import champion, registry, settings
    from airgate.orchestration.dags.approval_step import confirm

    # The ledger's own rules (and its audit binding) are promotion's tests; here: what confirm does with its answer.
    champ: dict[str, Any] = {"now": None}
    monkeypatch.setattr(champion, "current_champion", lambda engine, model: champ["now"])

    monkeypatch.setattr(settings, "mlflow_config", lambda: None)
    alias = {"v": "4"}
    monkeypatch.setattr(registry, "alias_version", lambda cfg, model, alias_name="champion": alias["v"])
    trid = training_run_id(spec.name, RUN)
    _open(wh, spec, status="approved")
    with pytest.raises(AirflowFailException, match="ledger's champion"):
        confirm(spec, trid)  # approved, but the ledger has no champion
    champ["now"] = champion.Champion("4", "apr-run", "promote")
    alias["v"] = "3"
    with pytest.raises(AirflowFailException, match="alias"):
        confirm(spec, trid)
    alias["v"] = "4"
    assert confirm(spec, trid)["model_version"] == "4"
    deployed = audit.events(wh, event_type="deployed")
    assert [(e["entity"]["approval_request_id"], e["entity"]["model_version"]) for e in deployed] == [
        ("apr-run", "4")
    ]
