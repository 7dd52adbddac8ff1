"""Monitoring after scoring: drift of features and scores against the champion's validation split."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airgate import audit, clean, collect, monitor, score
from airgate.simulator import SimConfig, Simulator, write_catalog

from .helpers import approve, land, prepare_data, train_to_request

pytestmark = pytest.mark.unit


@pytest.fixture
def champion(engine, spec, mlflow_cfg, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A champion trained on cohort A (batches 0-1); batch 2 brings a much weaker cohort B."""
    sim = Simulator(SimConfig(students_per_batch=120, events_per_student=40, new_cohort_from_batch=2,
                              cohort_shift=-2.5))
    write_catalog(sim, Path(os.environ["AIRGATE_HOME"]) / "catalog" / "knowledge_tracing_items.csv")
    labeled = prepare_data(engine, spec, sim, tmp_path)
    req = train_to_request(engine, spec, mlflow_cfg, tmp_path, labeled)
    approve(engine, spec, mlflow_cfg, req["approval_request_id"])
    return {"sim": sim, **req}  # type: ignore[dict-item]


def test_no_alarm_on_the_data_it_was_approved_on_and_an_alarm_on_a_new_cohort(  # type: ignore[no-untyped-def]
        engine, spec, mlflow_cfg, champion, tmp_path: Path) -> None:
    runs = str(tmp_path / "runs")
    score.score(engine, score.ScoreConfig(spec, mlflow_cfg, "2026-09-02", "sr-same"))
    same = monitor.check_drift(engine, spec, mlflow_cfg, "sr-same", runs)
    assert same.status == "ok", same.summary
    assert Path(str(same.report_path)).is_file() and same.model_version == champion["model_version"]

    collect.ingest(engine, spec, land(champion["sim"], tmp_path, range(2, 3)))
    clean.clean_pending(engine, spec)
    score.score(engine, score.ScoreConfig(spec, mlflow_cfg, "2026-09-03", "sr-cohort-b"))
    shifted = monitor.check_drift(engine, spec, mlflow_cfg, "sr-cohort-b", runs)
    assert shifted.status == "alarm", shifted.summary
    assert shifted.value is not None and shifted.value >= spec.monitoring.max_drift_share
    assert shifted.summary["score_drifted"]  # the champion's scores moved with the weaker cohort
    alarms = audit.events(engine, event_type="drift_alarm")
    assert [a["entity"]["scoring_run_id"] for a in alarms] == ["sr-cohort-b"]
    assert [e["entity"]["scoring_run_id"] for e in audit.events(engine, event_type="drift_check")] == \
        ["sr-same", "sr-cohort-b"]
    # a re-run of the check replaces its verdict, never adds a second one
    monitor.check_drift(engine, spec, mlflow_cfg, "sr-cohort-b", runs)
    verdicts = [(r["scoring_run_id"], r["status"]) for r in monitor.reports(engine, spec.name)]
    assert sorted(verdicts) == [("sr-cohort-b", "alarm"), ("sr-same", "ok")]
    assert audit.verify_chain(engine).ok


def test_a_check_that_cannot_run_is_not_evaluated(engine, spec, mlflow_cfg, champion) -> None:  # type: ignore[no-untyped-def]
    score.score(engine, score.ScoreConfig(spec, mlflow_cfg, "2026-09-02", "sr-1"))
    out = monitor.check_drift(engine, spec, mlflow_cfg, "sr-1", "/nonexistent/runs")
    assert out.status == "not_evaluated" and "valid.parquet" in out.summary["reason"]
    assert not out.alarm
