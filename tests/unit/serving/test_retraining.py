"""What starts training: new labels only until there is a champion, alarms only on labels the champion never saw."""

from __future__ import annotations

from typing import Any

from airgate.core import audit, ledger_rows
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import dataset_versions, model_candidates, utcnow
from airgate.governance import promotion
from airgate.serving import retraining


def _labeled(engine: Any, model: str, vid: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            dataset_versions.insert().values(
                version_id=vid,
                model=model,
                kind="labeled",
                content_hash=vid.ljust(64, "0")[:64],
                parents=[],
                row_count=10,
                schema={},
                summary={},
                created_at=utcnow(),
            )
        )


def _champion(engine: Any, model: str, version: str, trained_on: str) -> None:
    """A registered, approved version trained on ``trained_on``, as the ledger and the candidates table hold it."""
    with engine.begin() as conn:
        conn.execute(
            model_candidates.insert().values(
                model=model,
                training_run_id=f"tr-{version}",
                data_version=trained_on,
                model_version=version,
                trained_by="trainer",
                metrics={},
                status="registered",
                created_at=utcnow(),
            )
        )
        entry = ledger_rows.write_entry(
            conn,
            model=model,
            action="promote",
            from_version=None,
            to_version=version,
            approval_id=f"apr-{version}",
            actor="approver",
            reason="ok",
            at=utcnow(),
        )
        audit.append(  # the ledger is trusted only as far as a MACed audit event vouches for the row
            conn,
            actor="approver",
            event_type="promotion",
            model=model,
            entity={"model_version": version, "ledger_id": entry.id, "ledger_hash": entry.row_hash},
        )


def test_new_labels_train_until_there_is_a_champion(engine: Any, spec: ModelSpec) -> None:
    assert not retraining.on_new_labels(engine, spec).request  # nothing labeled yet
    _labeled(engine, spec.name, "lab-1")
    first = retraining.on_new_labels(engine, spec)
    assert first.request and first.labeled_version_id == "lab-1"

    # A candidate waits for a decision: more labels do not open a second request beside it.
    rid = promotion.open_request(engine, spec, "1", "tr-1", {}, "h" * 64, "trainer")
    _labeled(engine, spec.name, "lab-2")
    waiting = retraining.on_new_labels(engine, spec)
    assert not waiting.request and rid in waiting.reason

    # Once approved, labels alone never retrain: monitoring decides.
    _champion(engine, spec.name, "1", "lab-1")
    after = retraining.on_new_labels(engine, spec)
    assert not after.request and after.champion_version == "1" and "monitoring" in after.reason


def test_an_alarm_retrains_only_on_labels_the_champion_was_not_trained_on(
    engine: Any, spec: ModelSpec
) -> None:
    _labeled(engine, spec.name, "lab-1")
    _champion(engine, spec.name, "1", "lab-1")
    repeat = retraining.on_alarm(engine, spec, "drift")
    assert not repeat.request and repeat.champion_data_version == "lab-1"
    assert "learn nothing new" in repeat.reason

    _labeled(engine, spec.name, "lab-2")
    fresh = retraining.on_alarm(engine, spec, "decay")
    assert fresh.request and (fresh.labeled_version_id, fresh.champion_data_version) == ("lab-2", "lab-1")


def test_each_decision_is_on_the_record(engine: Any, spec: ModelSpec) -> None:
    _labeled(engine, spec.name, "lab-1")
    _champion(engine, spec.name, "1", "lab-1")
    retraining.record(
        engine,
        spec,
        retraining.on_alarm(engine, spec, "drift"),
        trigger="drift",
        actor="airflow",
        entity={"scoring_run_id": "sr-1"},
        details={"value": 0.9},
    )
    _labeled(engine, spec.name, "lab-2")
    retraining.record(
        engine,
        spec,
        retraining.on_alarm(engine, spec, "drift"),
        trigger="drift",
        actor="airflow",
        entity={"scoring_run_id": "sr-2"},
        details={"value": 0.8},
    )
    got = [
        (
            e["event_type"],
            e["entity"]["scoring_run_id"],
            e["entity"]["labeled_version_id"],
            e["details"]["reason"],
        )
        for e in audit.events(engine, model=spec.name)
        if e["event_type"].startswith("retraining")
    ]
    assert got == [
        ("retraining_not_requested", "sr-1", "lab-1", "drift"),
        ("retraining_requested", "sr-2", "lab-2", "drift"),
    ]
    assert audit.verify_chain(engine).ok


def _verdict(spec: ModelSpec, kind: str, status: str, **summary: Any) -> Any:
    from airgate.serving.monitoring import MonitorResult

    return MonitorResult(
        spec.name, "sr-7" if kind == "drift" else "lab-2@v1", kind, "1", status, 0.4, 0.3, summary, None
    )


def _answers(engine: Any, model: str) -> list[dict[str, Any]]:
    """The model's audit events besides the promotion that made the champion."""
    return [e for e in audit.events(engine, model=model) if e["event_type"] != "promotion"]


def test_a_verdict_without_alarm_decides_nothing_and_an_alarm_is_answered_on_the_record(
    engine: Any, spec: ModelSpec
) -> None:
    _labeled(engine, spec.name, "lab-1")
    _champion(engine, spec.name, "1", "lab-1")
    quiet = retraining.answer_verdict(engine, spec, _verdict(spec, "drift", "ok"), actor="airflow")
    assert not quiet.request and _answers(engine, spec.name) == []

    drift = retraining.answer_verdict(engine, spec, _verdict(spec, "drift", "alarm"), actor="airflow")
    _labeled(engine, spec.name, "lab-2")
    decay = retraining.answer_verdict(
        engine,
        spec,
        _verdict(spec, "decay", "alarm", newest_scoring_run_id="sr-6", auc=0.6, approval_auc=0.8),
        actor="airflow",
    )
    assert (drift.request, decay.request) == (False, True)
    got = [
        (e["event_type"], e["entity"]["scoring_run_id"], e["details"]["reason"], e["details"].get("auc"))
        for e in _answers(engine, spec.name)
    ]
    assert got == [
        ("retraining_not_requested", "sr-7", "drift", None),
        ("retraining_requested", "sr-6", "decay", 0.6),
    ]


def test_new_labels_record_only_a_request(engine: Any, spec: ModelSpec) -> None:
    assert not retraining.after_new_labels(engine, spec, actor="airflow", airflow_run_id="r0").request
    _labeled(engine, spec.name, "lab-1")
    assert retraining.after_new_labels(engine, spec, actor="airflow", airflow_run_id="r1").request
    assert [
        (e["event_type"], e["details"]["airflow_run_id"]) for e in audit.events(engine, model=spec.name)
    ] == [("retraining_requested", "r1")]


def test_training_starts_skips_or_refuses(engine: Any, spec: ModelSpec) -> None:
    def start(**kw: Any) -> retraining.TrainingStart:
        return retraining.start_training(engine, spec, training_run_id="tr-new", code_version="c1", **kw)

    assert (start().action, start().reason) == ("skip", "no labeled dataset version yet")
    assert start(pinned="nope").action == "refuse"
    _labeled(engine, spec.name, "lab-1")
    assert start() == retraining.TrainingStart("train", "", "lab-1")
    with engine.begin() as conn:
        conn.execute(
            model_candidates.insert().values(
                model=spec.name,
                training_run_id="tr-old",
                data_version="lab-1",
                model_version=None,
                trained_by="t",
                metrics={"spec_hash": spec.spec_hash},
                status="registered",
                code_version="c1",
                created_at=utcnow(),
            )
        )
    skipped = start()
    assert skipped.action == "skip" and "already trained by tr-old" in skipped.reason
    assert start(force=True).action == start(pinned="lab-1").action == "train"
    assert [e["event_type"] for e in audit.events(engine, model=spec.name)] == ["training_skipped"]
