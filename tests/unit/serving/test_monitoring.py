"""Monitoring: drift of features and scores after scoring; decay of the champion's AUC as trusted labels arrive."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from airgate.core import audit
from airgate.core.warehouse import labels
from airgate.data import clean, collect, labeling
from airgate.dev.simulator import SimConfig, Simulator, write_catalog
from airgate.governance import promotion
from airgate.serving import autolabel, monitoring, scoring
from tests.helpers import REPO_ROOT, approve, land, prepare_data, train_to_request


@pytest.fixture
def champion(engine, spec, mlflow_cfg, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A champion trained on cohort A (batches 0-1); batch 2 brings a much weaker cohort B."""
    sim = Simulator(
        SimConfig(students_per_batch=120, events_per_student=40, new_cohort_from_batch=2, cohort_shift=-2.5)
    )
    write_catalog(sim, Path(os.environ["AIRGATE_HOME"]) / "catalog" / "knowledge_tracing_items.csv")
    labeled = prepare_data(engine, spec, sim, tmp_path)
    req = train_to_request(engine, spec, mlflow_cfg, tmp_path, labeled)
    approve(engine, spec, mlflow_cfg, req["approval_request_id"])
    return {"sim": sim, **req}  # type: ignore[dict-item]


def test_no_alarm_on_the_data_it_was_approved_on_and_an_alarm_on_a_new_cohort(  # type: ignore[no-untyped-def]
    engine, spec, mlflow_cfg, champion, tmp_path: Path
) -> None:
    runs = str(tmp_path / "runs")
    scoring.score(engine, scoring.ScoreConfig(spec, mlflow_cfg, "2026-09-02", "sr-same", runs))
    same = monitoring.check_drift(engine, spec, mlflow_cfg, "sr-same", runs)
    assert same.status == "ok", same.summary
    assert Path(str(same.report_path)).is_file() and same.model_version == champion["model_version"]

    collect.ingest(engine, spec, land(champion["sim"], tmp_path, range(2, 3)))
    clean.clean_pending(engine, spec)
    scoring.score(engine, scoring.ScoreConfig(spec, mlflow_cfg, "2026-09-03", "sr-cohort-b", runs))
    shifted = monitoring.check_drift(engine, spec, mlflow_cfg, "sr-cohort-b", runs)
    assert shifted.status == "alarm", shifted.summary
    assert shifted.value is not None and shifted.value >= spec.monitoring.max_drift_share
    assert shifted.summary["score_drifted"]  # the champion's scores moved with the weaker cohort
    alarms = audit.events(engine, event_type="drift_alarm")
    assert [a["entity"]["scoring_run_id"] for a in alarms] == ["sr-cohort-b"]
    assert [e["entity"]["scoring_run_id"] for e in audit.events(engine, event_type="drift_check")] == [
        "sr-same",
        "sr-cohort-b",
    ]
    # a re-run of the check replaces its verdict, never adds a second one
    monitoring.check_drift(engine, spec, mlflow_cfg, "sr-cohort-b", runs)
    verdicts = [(r["scoring_run_id"], r["status"]) for r in monitoring.reports(engine, spec.name)]
    assert sorted(verdicts) == [("sr-cohort-b", "alarm"), ("sr-same", "ok")]
    assert audit.verify_chain(engine).ok


def test_a_check_that_cannot_run_is_not_evaluated(engine, spec, mlflow_cfg, champion, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scoring.score(engine, scoring.ScoreConfig(spec, mlflow_cfg, "2026-09-02", "sr-1", str(tmp_path / "runs")))
    out = monitoring.check_drift(engine, spec, mlflow_cfg, "sr-1", "/nonexistent/runs")
    assert out.status == "not_evaluated" and "valid.parquet" in out.summary["reason"]
    assert not out.alarm


# --------------------------------------------------------------------------------------------------------- decay


def _decay_events(engine) -> list[tuple[str, str, str | None]]:  # type: ignore[no-untyped-def]
    return [
        (e["event_type"], e["entity"]["labeled_version_id"], e["details"]["status"])
        for e in audit.events(engine)
        if e["event_type"] in ("decay_check", "decay_alarm")
    ]


@pytest.fixture
def steady(engine, spec, mlflow_cfg, tmp_path: Path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A champion trained and approved on batches 0-1 of a world that does not change by itself."""
    sim = Simulator(SimConfig(students_per_batch=120, events_per_student=40))
    write_catalog(sim, Path(os.environ["AIRGATE_HOME"]) / "catalog" / "knowledge_tracing_items.csv")
    labeled = prepare_data(engine, spec, sim, tmp_path)
    req = train_to_request(engine, spec, mlflow_cfg, tmp_path, labeled)
    approve(engine, spec, mlflow_cfg, req["approval_request_id"])
    evidence = promotion.get_request(engine, req["approval_request_id"])["evidence"]
    return {"sim": sim, "approval_auc": evidence["metrics"][evidence["candidate"]]["test_auc"], **req}


def _score_and_label(
    engine,
    spec,
    mlflow_cfg,
    tmp_path: Path,
    sim: Simulator,
    batch: int,  # type: ignore[no-untyped-def]
    day: str,
    run_id: str,
) -> str:
    """A new batch arrives, is cleaned and scored for ``day``; then labeling builds the next labeled version."""
    collect.ingest(engine, spec, land(sim, tmp_path / f"b{batch}", range(batch, batch + 1)))
    clean.clean_pending(engine, spec)
    scoring.score(engine, scoring.ScoreConfig(spec, mlflow_cfg, day, run_id, runs_dir=str(tmp_path / "runs")))
    return _label(engine, spec, mlflow_cfg).labeled_version_id or ""


def _label(engine, spec, mlflow_cfg) -> labeling.LabelResult:  # type: ignore[no-untyped-def]
    """The label DAG's step: the next labeled version, with the approved champion as the auto-labeler."""
    out = labeling.label_pending(
        engine, spec, predictor=autolabel.champion_predictor(engine, spec, mlflow_cfg)
    )
    assert out.created and out.labeled_version_id is not None
    return out


def test_decay_is_ok_while_the_world_holds_and_alarms_once_the_items_change(  # type: ignore[no-untyped-def]
    engine, spec, mlflow_cfg, steady, tmp_path: Path
) -> None:
    newest = spec.model_copy(
        update={"monitoring": spec.monitoring.model_copy(update={"decay_window_partitions": 1})}
    )
    l2 = _score_and_label(engine, spec, mlflow_cfg, tmp_path, steady["sim"], 2, "2026-09-03", "sr-2")
    same = monitoring.check_decay(engine, newest)
    assert same.status == "ok", same.summary
    assert same.model_version == steady["model_version"] and same.summary["labeled_version_id"] == l2
    # compared with the test AUC the approver saw, on the ground truth that joined the published predictions
    assert same.summary["approval_auc"] == pytest.approx(steady["approval_auc"])
    assert same.value is not None and same.value < spec.monitoring.max_auc_drop
    assert same.summary["by_source"] == {"ground_truth": same.summary["labeled_rows"]}
    assert same.summary["labeled_rows"] > 4000 and same.summary["scoring_run_ids"] == ["sr-2"]

    # the partition is scored again: only its published run counts, and a re-run replaces the verdict
    scoring.score(
        engine, scoring.ScoreConfig(spec, mlflow_cfg, "2026-09-03", "sr-2b", runs_dir=str(tmp_path / "runs"))
    )
    again = monitoring.check_decay(engine, newest)
    assert again.status == "ok" and again.summary["scoring_run_ids"] == ["sr-2b"]
    assert again.summary["labeled_rows"] == same.summary["labeled_rows"]

    # a new curriculum reuses the item ids with the difficulties turned around: the champion's ranking decays
    changed = Simulator(steady["sim"].config)
    changed.item_difficulty = -changed.item_difficulty
    l3 = _score_and_label(engine, spec, mlflow_cfg, tmp_path, changed, 3, "2026-09-04", "sr-3")
    decayed = monitoring.check_decay(engine, newest)
    assert decayed.status == "alarm" and decayed.alarm, decayed.summary
    assert decayed.value is not None and decayed.value > spec.monitoring.max_auc_drop
    assert decayed.summary["auc"] < steady["approval_auc"] - spec.monitoring.max_auc_drop
    assert decayed.summary["scoring_run_ids"] == ["sr-3"]

    verdicts = [
        (r["scoring_run_id"], r["status"])
        for r in monitoring.reports(engine, spec.name)
        if r["kind"] == "decay"
    ]
    v = steady["model_version"]
    # one verdict per labeled version (the re-run replaced the first); ids are hashes, so compare without order
    assert len(verdicts) == 2 and dict(verdicts) == {f"{l2}@v{v}": "ok", f"{l3}@v{v}": "alarm"}
    assert _decay_events(engine) == [
        ("decay_check", l2, "ok"),
        ("decay_check", l2, "ok"),
        ("decay_check", l3, "alarm"),
        ("decay_alarm", l3, "alarm"),
    ]
    assert audit.verify_chain(engine).ok


def test_decay_is_not_evaluated_until_enough_trusted_labels_arrive(  # type: ignore[no-untyped-def]
    engine, spec, mlflow_cfg, steady, tmp_path: Path
) -> None:
    need = spec.monitoring.min_labeled_rows
    # a bold auto-labeler: plenty of auto labels, none of which may count as evidence about the champion
    spec = spec.model_copy(
        update={"label_policy": spec.label_policy.model_copy(update={"auto_label_min_confidence": 0.6})}
    )
    # the same students, but their answers await grading: scored tonight, graded later
    waiting = Simulator(dataclasses.replace(steady["sim"].config, ungraded_rate=1.0))
    labeled = _score_and_label(engine, spec, mlflow_cfg, tmp_path, waiting, 2, "2026-09-03", "sr-2")
    first = monitoring.check_decay(engine, spec)
    assert first.status == "not_evaluated" and not first.alarm and first.value is None
    assert first.summary["labeled_rows"] == 0 and f"at least {need}" in first.summary["reason"]
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count())
                .select_from(labels)
                .where(labels.c.version_id == labeled, labels.c.source == "auto")
            ).scalar_one()
            >= need
        )

    truth = waiting.batch(2).truth
    truth = truth.loc[~truth["rapid_guess"], ["event_id", "true_correct"]].rename(
        columns={"true_correct": "label"}
    )
    late = tmp_path / "late"
    late.mkdir()
    truth.head(need - 1).to_csv(late / "late_a.csv", index=False)
    assert [o.accepted for o in labeling.ingest_label_files(engine, spec, late, "late")] == [need - 1]
    short = _label(engine, spec, mlflow_cfg)
    short_verdict = monitoring.check_decay(engine, spec)
    assert short_verdict.status == "not_evaluated" and short_verdict.summary["labeled_rows"] == need - 1

    truth.iloc[need - 1 :].to_csv(late / "late_b.csv", index=False)
    assert [o.accepted for o in labeling.ingest_label_files(engine, spec, late, "late")] == [
        len(truth) - need + 1
    ]
    full = _label(engine, spec, mlflow_cfg)
    verdict = monitoring.check_decay(engine, spec)
    assert verdict.status in ("ok", "alarm") and verdict.value is not None, verdict.summary
    assert verdict.summary["by_source"] == {"late": len(truth)} and verdict.summary["labeled_rows"] == len(
        truth
    )
    keys = {r["scoring_run_id"] for r in monitoring.reports(engine, spec.name) if r["kind"] == "decay"}
    v = steady["model_version"]
    assert keys == {f"{x}@v{v}" for x in (labeled, short.labeled_version_id, full.labeled_version_id)}


def test_decay_without_a_champion_is_not_evaluated(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    out = monitoring.check_decay(engine, spec)
    assert out.status == "not_evaluated" and "no approved champion" in out.summary["reason"]
    assert _decay_events(engine) == [("decay_check", labeled, "not_evaluated")]


def test_the_monitor_dag_requests_retraining_only_on_a_decay_alarm(  # type: ignore[no-untyped-def]
    engine, spec, mlflow_cfg, steady, tmp_path: Path, airflow_db, monkeypatch
) -> None:
    """Under dag.test(), as the scheduler runs it when a labeled version lands (the shipped spec's thresholds)."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRGATE_WAREHOUSE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv(
        "AIRGATE_MLFLOW_URI", mlflow_cfg.tracking_uri
    )  # the audit anchor also goes to the registry
    monkeypatch.setenv("AIRGATE_MLFLOW_ARTIFACTS", mlflow_cfg.artifact_root)
    dag = DagBag(dag_folder=str(REPO_ROOT / "dags")).dags["knowledge_tracing__monitor"]

    def states(dr) -> dict[str, str]:  # type: ignore[no-untyped-def]
        return {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}

    # nothing published yet: not evaluated, so no retraining
    quiet = dag.test()
    assert states(quiet) == {
        "check_decay": "success",
        "decayed": "success",
        "request_retraining": "skipped",
        "anchor_audit": "success",
    }

    changed = Simulator(steady["sim"].config)
    changed.item_difficulty = -changed.item_difficulty
    labeled = _score_and_label(engine, spec, mlflow_cfg, tmp_path, changed, 2, "2026-09-03", "sr-2")
    alarmed = dag.test()
    assert states(alarmed) == {
        "check_decay": "success",
        "decayed": "success",
        "request_retraining": "success",
        "anchor_audit": "success",
    }
    (req,) = audit.events(engine, event_type="retraining_requested")
    assert req["details"]["reason"] == "decay" and req["entity"]["labeled_version_id"] == labeled
    assert (
        req["entity"]["scoring_run_id"] == "sr-2" and req["details"]["value"] > spec.monitoring.max_auc_drop
    )
    assert [e["details"]["status"] for e in audit.events(engine, event_type="decay_check")] == [
        "not_evaluated",
        "alarm",
    ]
