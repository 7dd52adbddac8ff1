"""Alerts: failures, a missed scoring deadline and drift/decay alarms reach the notifiers the spec names, each call
is audited, and a notifier that fails neither stops the others nor goes unrecorded.

The notifier under test is tests/recording_notifier.py: it appends each call to $AIRGATE_HOME/recorded_alerts.jsonl,
so calls made in another process (a DAG run, Airflow's callback runner) are visible here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from airgate.core import audit
from airgate.core.spec import ModelSpec, SpecError, load_spec
from airgate.orchestration import alerts
from tests.helpers import REPO_ROOT, migrated_sqlite, snapshot_sqlite
from tests.recording_notifier import recorded

ROOT = REPO_ROOT
SPEC = ROOT / "include" / "specs" / "knowledge_tracing.yaml"
RECORDER = "tests.recording_notifier.RecordingNotifier"
RECORD_FN = "tests.recording_notifier.record_call"


def _doc(mutate: Any = None) -> dict[str, Any]:
    doc = yaml.safe_load(SPEC.read_text())
    if mutate:
        mutate(doc)
    return doc


def _write(folder: Path, doc: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _alerting_doc(deadline_minutes: int | None = 45) -> dict[str, Any]:
    """The shipped spec, alerting to a broken notifier, then a working one, then a plain function."""

    def mutate(d: dict[str, Any]) -> None:
        d["scoring"]["deadline_minutes"] = deadline_minutes
        d["alerts"] = {
            "on_failure": [
                {"notifier": RECORDER, "kwargs": {"label": "mail", "fail": True}},
                {"notifier": RECORDER, "kwargs": {"label": "pager"}},
                {"notifier": RECORD_FN, "kwargs": {"label": "fn"}},
            ],
            "on_deadline_missed": (
                [{"notifier": RECORDER, "kwargs": {"label": "sla"}}] if deadline_minutes else []
            ),
            "on_drift": [RECORDER],
            "on_decay": [{"notifier": RECORDER, "kwargs": {"label": "decay"}}],
        }

    return _doc(mutate)


@pytest.fixture
def alerting_spec(tmp_path: Path) -> ModelSpec:
    return load_spec(_write(tmp_path / "specs", _alerting_doc()))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "airgate"
    h.mkdir()
    monkeypatch.setenv("AIRGATE_HOME", str(h))
    return h


# ------------------------------------------------------------------------------------------------ the spec


def test_shipped_spec_alerts_name_notifiers_that_import() -> None:
    spec = load_spec(SPEC)
    assert spec.scoring.deadline_minutes and spec.alerts.on_deadline_missed
    for kind in ("failure", "deadline_missed", "drift", "decay"):
        for target in spec.alerts.targets(kind):
            assert callable(alerts.resolve(target.notifier)), target


def test_alert_entries_accept_a_bare_path_or_a_notifier_with_kwargs(
    alerting_spec: ModelSpec, tmp_path: Path
) -> None:
    drift = alerting_spec.alerts.on_drift[0]
    assert (drift.notifier, drift.kwargs) == (RECORDER, {})
    assert alerting_spec.alerts.on_failure[0].kwargs == {"label": "mail", "fail": True}
    quiet = load_spec(_write(tmp_path, _doc(lambda d: d.pop("alerts"))))
    assert all(quiet.alerts.targets(k) == [] for k in ("failure", "deadline_missed", "drift", "decay"))


@pytest.mark.parametrize(
    ("mutate", "field", "fix"),
    [
        (
            lambda d: d.update(alerts={"on_failure": ["smtp notifier"]}),
            "alerts.on_failure[0].notifier",
            "dotted import path",
        ),
        (
            lambda d: d.update(alerts={"on_drift": ["SmtpNotifier"]}),
            "alerts.on_drift[0].notifier",
            "dotted import path",
        ),
        (
            lambda d: d.update(alerts={"on_failure": [{"notifier": RECORDER, "kwargs": {"context": {}}}]}),
            "alerts.on_failure[0].kwargs",
            "'context' is reserved",
        ),
        (
            lambda d: d.update(alerts={"on_failure": [{"notifier": RECORDER, "args": [1]}]}),
            "alerts.on_failure[0].args",
            "remove it",
        ),
        (lambda d: d.update(alerts={"on_fail": [RECORDER]}), "alerts.on_fail", "remove it"),
        (
            lambda d: (
                d["scoring"].pop("deadline_minutes"),
                d.update(alerts={"on_deadline_missed": [RECORDER]}),
            ),
            "(top level)",
            "set scoring.deadline_minutes",
        ),
        (lambda d: d["scoring"].update(deadline_minutes=0), "scoring.deadline_minutes", "larger value"),
        (
            lambda d: d["scoring"].update(deadline_from="started_at"),
            "scoring.deadline_from",
            "'logical_date' or 'queued_at'",
        ),
    ],
)
def test_a_bad_alerts_section_names_file_field_and_fix(
    tmp_path: Path, mutate: Any, field: str, fix: str
) -> None:
    path = _write(tmp_path, _doc(mutate))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    msg = str(err.value)
    assert str(path) in msg and f"field '{field}" in msg and "Fix:" in msg and fix in msg, msg


# ------------------------------------------------------------------------------------------------ DAG wiring


@pytest.mark.dag_structure
def test_every_task_of_every_dag_calls_the_failure_notifiers(
    alerting_spec: ModelSpec, tmp_path: Path
) -> None:
    from airgate.orchestration.builders import build_all

    dags = build_all(alerting_spec)
    for dag in dags.values():
        for t in dag.tasks:
            callbacks = t.on_failure_callback  # typed callable | list | None; the operators keep a list
            assert isinstance(callbacks, Sequence), (dag.dag_id, t.task_id)
            assert [type(cb).__name__ for cb in callbacks] == ["FailureAlert"], (dag.dag_id, t.task_id)
    quiet = build_all(load_spec(_write(tmp_path / "quiet", _doc(lambda d: d.pop("alerts")))))
    assert all(not t.on_failure_callback for d in quiet.values() for t in d.tasks)


@pytest.mark.dag_structure
def test_parsing_imports_no_notifier(tmp_path: Path) -> None:
    """A notifier is imported when an alert is sent, never at parse time: one that is not even installed still
    parses (its failure to import is audited when it is needed, see below)."""
    from airgate.orchestration.builders import build_train

    doc = _doc(lambda d: d.update(alerts={"on_failure": ["not_installed_pkg.notifiers.Pager"]}))
    spec = load_spec(_write(tmp_path, doc))
    before = set(sys.modules)
    dag = build_train(spec)
    assert dag.tasks and "not_installed_pkg" not in sys.modules
    assert not {m for m in set(sys.modules) - before if m.startswith("tests.recording")}


@pytest.mark.dag_structure
def test_score_dag_kwargs_carry_an_airflow_deadline_alert(alerting_spec: ModelSpec) -> None:
    # SyncCallback and DeadlineReference from where airgate.orchestration.alerts takes them: airflow.sdk exports
    # them at runtime, but its __init__.pyi does not list them
    from airflow.sdk import DAG, task
    from airflow.sdk.definitions.callback import SyncCallback
    from airflow.sdk.definitions.deadline import DeadlineReference
    from airflow.serialization.serialized_objects import DagSerialization

    kw = alerts.score_dag_kwargs(alerting_spec)
    alert = kw["deadline"]
    assert alert.interval == timedelta(minutes=45)
    assert alert.reference == DeadlineReference.DAGRUN_LOGICAL_DATE
    assert (
        isinstance(alert.callback, SyncCallback)
        and alert.callback.path == "airgate.orchestration.alerts.deadline_missed"
    )
    assert alert.callback.kwargs["targets"] == [{"notifier": RECORDER, "kwargs": {"label": "sla"}}]

    with DAG("deadline_probe", schedule="0 2 * * *", start_date=datetime(2026, 1, 1), **kw) as dag:
        task(task_id="noop")(lambda: None)()
    back = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))  # what the scheduler stores
    # SerializedDAG.deadline is annotated list[str] | None, but it holds the encoded alerts (dicts)
    stored = cast("list[dict[str, Any]]", back.deadline)
    assert [(d["interval"]["__data__"], d["callback"]["__data__"]["path"]) for d in stored] == [
        (45 * 60.0, "airgate.orchestration.alerts.deadline_missed")
    ]

    queued = alerting_spec.model_copy(
        update={"scoring": alerting_spec.scoring.model_copy(update={"deadline_from": "queued_at"})}
    )
    assert alerts.score_dag_kwargs(queued)["deadline"].reference == DeadlineReference.DAGRUN_QUEUED_AT
    none = alerting_spec.model_copy(
        update={"scoring": alerting_spec.scoring.model_copy(update={"deadline_minutes": None})}
    )
    assert alerts.score_dag_kwargs(none) == {}


@pytest.mark.dag_structure
def test_the_factory_score_dag_carries_the_deadline(alerting_spec: ModelSpec) -> None:
    from airgate.orchestration.builders import build_score

    dag = build_score(alerting_spec)
    deadlines = dag.deadline  # typed list | alert | None: DAG's converter makes it a list
    assert isinstance(deadlines, list)
    assert deadlines and [d.interval for d in deadlines] == [timedelta(minutes=45)]
    assert deadlines[0].callback.path == "airgate.orchestration.alerts.deadline_missed"


# ------------------------------------------------------------------------------------------------ sending


def test_a_failing_notifier_does_not_stop_the_others_and_every_call_is_audited(
    alerting_spec: ModelSpec, home: Path, sqlite_engine: Any
) -> None:
    context = {"dag_run": {"dag_id": "knowledge_tracing__train", "run_id": "r1"}}
    outcomes = alerts.notify(alerting_spec, "failure", context, message="train failed", engine=sqlite_engine)
    assert [(o.ok, o.audited) for o in outcomes] == [(False, True), (True, True), (True, True)]
    assert "unreachable" in (outcomes[0].error or "")
    calls = recorded()
    assert [(c["label"], c["via"], c["kind"], c["message"], c["dag_id"], c["run_id"]) for c in calls] == [
        ("pager", "notifier", "failure", "train failed", "knowledge_tracing__train", "r1"),
        ("fn", "function", "failure", "train failed", "knowledge_tracing__train", "r1"),
    ]
    assert calls[0]["subject"] == "[airgate] failure"  # template fields rendered against the context

    events = audit.events(sqlite_engine, model=alerting_spec.name)
    assert [(e["event_type"], e["entity"]["notifier"]) for e in events] == [
        ("alert_failed", RECORDER),
        ("alert_sent", RECORDER),
        ("alert_sent", RECORD_FN),
    ]
    assert "unreachable" in events[0]["details"]["error"]
    assert events[1]["entity"] == {
        "kind": "failure",
        "notifier": RECORDER,
        "dag_id": "knowledge_tracing__train",
        "run_id": "r1",
    }
    assert audit.verify_chain(sqlite_engine).ok


def test_a_notifier_that_cannot_be_imported_is_audited_and_the_rest_still_run(
    tmp_path: Path, home: Path, sqlite_engine: Any
) -> None:
    doc = _doc(
        lambda d: d.update(
            alerts={"on_decay": ["not_installed_pkg.Pager", "tests.recording_notifier.Nope", RECORDER]}
        )
    )
    spec = load_spec(_write(tmp_path, doc))
    outcomes = alerts.notify(spec, "decay", {}, message="decayed", engine=sqlite_engine)
    assert [o.ok for o in outcomes] == [False, False, True]
    assert "ModuleNotFoundError" in (outcomes[0].error or "") or "ImportError" in (outcomes[0].error or "")
    assert 'does not define a "Nope"' in (outcomes[1].error or "")
    assert [c["kind"] for c in recorded()] == ["decay"]
    assert [e["event_type"] for e in audit.events(sqlite_engine, event_type="alert_failed")] == [
        "alert_failed"
    ] * 2


def test_a_drift_alarm_reaches_the_drift_notifiers_and_an_ok_verdict_does_not(
    alerting_spec: ModelSpec, home: Path, sqlite_engine: Any
) -> None:
    verdict = {
        "model": alerting_spec.name,
        "scoring_run_id": "sr-7",
        "kind": "drift",
        "model_version": "3",
        "status": "alarm",
        "value": 0.75,
        "threshold": 0.5,
        "summary": {},
        "report_path": "/r/drift.html",
    }
    assert (
        alerts.notify_alarm(alerting_spec, "drift", {**verdict, "status": "ok"}, engine=sqlite_engine) == []
    )
    assert recorded() == []

    sent = alerts.notify_alarm(alerting_spec, "drift", verdict, engine=sqlite_engine)
    assert [(s["kind"], s["ok"], s["audited"]) for s in sent] == [("drift", True, True)]
    (call,) = recorded()
    assert (call["kind"], call["label"]) == ("drift", "recorder")
    assert "0.75" in call["message"] and "0.5" in call["message"] and "version 3" in call["message"]
    (event,) = audit.events(sqlite_engine, event_type="alert_sent")
    assert event["entity"] == {
        "kind": "drift",
        "notifier": RECORDER,
        "scoring_run_id": "sr-7",
        "model_version": "3",
    }

    decay = {**verdict, "kind": "decay", "value": 0.09, "threshold": 0.05}
    alerts.notify_alarm(alerting_spec, "decay", decay, engine=sqlite_engine)
    assert [(c["kind"], c["label"]) for c in recorded()] == [("drift", "recorder"), ("decay", "decay")]


def test_the_shipped_log_notifier_writes_the_alert_to_a_file_and_the_log(
    home: Path, sqlite_engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    spec = load_spec(SPEC)
    verdict = {
        "scoring_run_id": "sr-1",
        "model_version": "2",
        "status": "alarm",
        "value": 0.8,
        "threshold": 0.5,
    }
    with caplog.at_level("WARNING", logger="airgate.orchestration.alerts"):
        sent = alerts.notify_alarm(spec, "drift", verdict, engine=sqlite_engine)
    assert [(s["notifier"], s["ok"]) for s in sent] == [("airgate.notifiers.LogNotifier", True)]
    (line,) = [json.loads(x) for x in (home / "alerts" / "alerts.jsonl").read_text().splitlines()]
    assert line["kind"] == "drift" and line["message"].startswith(
        "retraining requested: drift alarm for knowledge_tracing version 2"
    )
    assert any("ALERT drift: retraining requested" in r.getMessage() for r in caplog.records)


def _deadline_context(run_id: str) -> dict[str, Any]:
    """What Airflow's scheduler puts in the callback's kwargs (Deadline.handle_miss: the run as the REST API's
    DAGRunResponse in JSON, and the deadline)."""
    return {
        "dag_run": {
            "dag_run_id": run_id,
            "dag_id": "knowledge_tracing__score",
            "state": "running",
            "logical_date": "2026-03-01T02:00:00Z",
            "queued_at": "2026-03-01T02:00:05Z",
        },
        "deadline": {"id": "0190-abc", "deadline_time": "2026-03-01T02:45:00+00:00"},
    }


def test_the_deadline_callback_as_airflow_runs_it_reaches_the_notifiers_and_the_audit_log(
    alerting_spec: ModelSpec, home: Path, sqlite_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import structlog
    from airflow.sdk.execution_time.callback_supervisor import execute_callback

    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRGATE_WAREHOUSE",
        json.dumps({"conn_type": "sqlite", "host": str(sqlite_engine.url.database)}),
    )
    cb = alerts.score_dag_kwargs(alerting_spec)["deadline"].callback
    # The executor's callback process imports the path and calls it with the stored kwargs plus ``context``.
    ok, error = execute_callback(
        cb.path,
        {**cb.kwargs, "context": _deadline_context("scheduled__2026-03-01")},
        dag_rel_path=Path(""),
        bundle_path=None,
        log=structlog.get_logger(),
    )
    assert (ok, error) == (True, None)
    (call,) = recorded()
    assert (call["kind"], call["label"], call["dag_id"], call["run_id"]) == (
        "deadline_missed",
        "sla",
        "knowledge_tracing__score",
        "scheduled__2026-03-01",
    )
    assert "missed its deadline 2026-03-01T02:45:00+00:00 (45 min after its logical date)" in call["message"]
    events = audit.events(sqlite_engine, model=alerting_spec.name)
    assert [e["event_type"] for e in events] == ["deadline_missed", "alert_sent"]
    assert (
        events[0]["details"]["deadline_minutes"] == 45
        and events[0]["entity"]["run_id"] == "scheduled__2026-03-01"
    )


def test_a_run_queued_after_its_deadline_is_waived_on_the_record_and_pages_nobody(
    alerting_spec: ModelSpec, home: Path, sqlite_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tick Airflow starts when the score DAG is unpaused (02:00 run created at 14:00, deadline 02:45) could
    never have met its deadline: a first deployment must stay quiet."""
    import structlog
    from airflow.sdk.execution_time.callback_supervisor import execute_callback

    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRGATE_WAREHOUSE",
        json.dumps({"conn_type": "sqlite", "host": str(sqlite_engine.url.database)}),
    )
    cb = alerts.score_dag_kwargs(alerting_spec)["deadline"].callback
    ctx = _deadline_context("scheduled__2026-03-01")
    ctx["dag_run"]["queued_at"] = "2026-03-01T14:00:00Z"
    ok, error = execute_callback(
        cb.path,
        {**cb.kwargs, "context": ctx},
        dag_rel_path=Path(""),
        bundle_path=None,
        log=structlog.get_logger(),
    )
    assert (ok, error) == (True, None)
    assert recorded() == []
    (waived,) = audit.events(sqlite_engine, model=alerting_spec.name)
    assert (
        waived["event_type"] == "deadline_waived"
        and "queued after its deadline" in waived["details"]["reason"]
    )
    assert alerts.deadline_applies("2026-03-01T02:45:00+00:00", "2026-03-01T02:00:05Z")
    assert alerts.deadline_applies(
        "2026-03-01T02:45:00+00:00", None
    )  # not knowing is no reason to stay silent


def test_a_deadline_notifier_that_fails_marks_the_callback_failed_after_the_others_ran(
    alerting_spec: ModelSpec, home: Path, sqlite_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import structlog
    from airflow.sdk.execution_time.callback_supervisor import execute_callback

    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRGATE_WAREHOUSE",
        json.dumps({"conn_type": "sqlite", "host": str(sqlite_engine.url.database)}),
    )
    targets = [
        {"notifier": RECORDER, "kwargs": {"label": "down", "fail": True}},
        {"notifier": RECORDER, "kwargs": {"label": "up"}},
    ]
    ok, error = execute_callback(
        "airgate.orchestration.alerts.deadline_missed",
        {
            "model": alerting_spec.name,
            "minutes": 45,
            "reference": "queued_at",
            "targets": targets,
            "context": _deadline_context("manual__x"),
        },
        dag_rel_path=Path(""),
        bundle_path=None,
        log=structlog.get_logger(),
    )
    assert not ok and "unreachable" in (
        error or ""
    )  # Airflow records the callback as failed, with the reason
    assert [c["label"] for c in recorded()] == ["up"]
    assert [e["event_type"] for e in audit.events(sqlite_engine, model=alerting_spec.name)] == [
        "deadline_missed",
        "alert_failed",
        "alert_sent",
    ]


# ------------------------------------------------------------------------------------------------ real Airflow


PROBE_DAG = '''
"""A DAG for the alert tests: the factory's default_args and the score DAG's deadline on two tiny tasks."""
import os

from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException

from airgate.orchestration import alerts
from airgate.orchestration.builders import START, _defaults
from airgate.core.spec import load_spec

spec = load_spec(os.environ["AIRGATE_PROBE_SPEC"])

with DAG("airgate_alerts_probe", schedule="0 2 * * *", start_date=START, catchup=False,
         default_args=_defaults(spec), **alerts.score_dag_kwargs(spec)):
    @task
    def plan() -> int:
        return 1

    @task
    def score_shard(n: int) -> None:
        raise AirflowFailException("warehouse unreachable")

    score_shard(plan())
'''

PROBE_RUN = """
import json, os
from datetime import timedelta

import structlog
from sqlalchemy import select

from airflow import settings
from airflow.dag_processing.dagbag import DagBag
from airflow.models import DagRun, Deadline
from airflow.models.callback import ExecutorCallback
from airflow.sdk import timezone
from airflow.sdk.execution_time.callback_supervisor import execute_callback

dags = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
bag = DagBag(dag_folder=dags)
assert not bag.import_errors, bag.import_errors
logical = timezone.utcnow() - timedelta(hours=2)  # the run started late: its 45-minute deadline has passed
dr = bag.dags["airgate_alerts_probe"].test(logical_date=logical)
out = {"state": str(dr.state), "run_id": dr.run_id, "logical_date": logical.isoformat()}

session = settings.Session()
rows = session.scalars(select(Deadline).join(DagRun).where(DagRun.run_id == dr.run_id)).all()
out["deadlines"] = [d.deadline_time.isoformat() for d in rows]
# The scheduler loop's deadline step (SchedulerJobRunner): expired, unhandled deadlines are handed their callback.
for d in session.scalars(select(Deadline).where(Deadline.deadline_time < timezone.utcnow(), ~Deadline.missed)):
    d.handle_miss(session)
session.commit()
# What the executor's callback process then runs for each pending callback workload.
out["callbacks"] = []
for cb in session.scalars(select(ExecutorCallback)).all():
    ok, err = execute_callback(cb.data["path"], cb.data["kwargs"], dag_rel_path="probe_dag.py", bundle_path=dags,
                               log=structlog.get_logger())
    out["callbacks"].append({"path": cb.data["path"], "ok": ok, "error": err})
print("PROBE " + json.dumps(out, default=str))
"""


@pytest.mark.e2e
def test_under_real_airflow_a_failed_task_and_a_missed_deadline_reach_the_notifiers(
    airflow_db: Path, tmp_path: Path
) -> None:
    """dag.test() runs a DAG with the factory's default_args and the scoring deadline; its task fails. Airflow
    creates the Deadline row from the serialized DAG; the scheduler's deadline step and the executor's callback
    runner (the same functions, called here without a scheduler process) send the missed-deadline alert."""
    home = tmp_path / "airgate"
    af_home = tmp_path / "airflow"
    dags = tmp_path / "dags"
    af_home.mkdir()
    dags.mkdir()
    # A copy of the session's migrated metadata DB: this test's DAG folder does not touch the shared one.
    snapshot_sqlite(airflow_db / "airflow.db", af_home / "airflow.db")
    (dags / "probe_dag.py").write_text(PROBE_DAG)
    (tmp_path / "probe_run.py").write_text(PROBE_RUN)
    spec_path = _write(tmp_path / "specs", _alerting_doc())
    wh = migrated_sqlite(home / "warehouse.db")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(af_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRGATE_HOME": str(home),
        "AIRGATE_PROBE_SPEC": str(spec_path),
        "AIRFLOW_CONN_AIRGATE_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(wh)}),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "probe_run.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(lines[-1][len("PROBE ") :])

    assert out["state"] == "failed"
    logical = datetime.fromisoformat(out["logical_date"])
    assert [datetime.fromisoformat(d) for d in out["deadlines"]] == [logical + timedelta(minutes=45)]
    assert out["callbacks"] == [
        {"path": "airgate.orchestration.alerts.deadline_missed", "ok": True, "error": None}
    ]

    calls = [json.loads(ln) for ln in (home / "recorded_alerts.jsonl").read_text().splitlines()]
    failures = [c for c in calls if c["kind"] == "failure"]
    assert [(c["label"], c["dag_id"], c["task_id"], c["run_id"]) for c in failures] == [
        (label, "airgate_alerts_probe", "score_shard", out["run_id"]) for label in ("pager", "fn")
    ]
    assert "AirflowFailException: warehouse unreachable" in failures[0]["exception"]
    (missed,) = [c for c in calls if c["kind"] == "deadline_missed"]
    assert (missed["label"], missed["dag_id"], missed["run_id"]) == (
        "sla",
        "airgate_alerts_probe",
        out["run_id"],
    )

    from airgate.core.warehouse import make_engine

    engine = make_engine(f"sqlite:///{wh}")
    types = [
        (e["event_type"], e["entity"].get("kind"), e["entity"].get("task_id"))
        for e in audit.events(engine, model="knowledge_tracing")
    ]
    assert types == [
        ("alert_failed", "failure", "score_shard"),
        ("alert_sent", "failure", "score_shard"),
        ("alert_sent", "failure", "score_shard"),
        ("deadline_missed", "deadline_missed", None),
        ("alert_sent", "deadline_missed", None),
    ]
    assert audit.verify_chain(engine).ok
