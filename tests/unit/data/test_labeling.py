"""Labeling: late grades, auto-labels from the approved champion, the review queue, provenance and trust order."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from airgate.core import audit, datasets
from airgate.core.warehouse import labels, review_queue
from airgate.data import clean, collect, labeling
from airgate.dev.simulator import SimConfig, Simulator, answer_reviews, load_truth, write_late_grades
from airgate.model.training import time_split, training_frame
from airgate.serving import autolabel
from tests.helpers import approve, land, train_to_request

pytestmark = pytest.mark.data


def _labels(engine, version: str) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return pd.DataFrame(
            [dict(r) for r in conn.execute(select(labels).where(labels.c.version_id == version)).mappings()]
        )


@pytest.fixture
def graded_later(small_sim):  # type: ignore[no-untyped-def]
    """A simulator whose app leaves 30% of answers ungraded, to be graded late (or reviewed)."""
    return Simulator(SimConfig(students_per_batch=120, events_per_student=40, ungraded_rate=0.3))


def _ingest(engine, spec, sim, root: Path, batches: range) -> None:  # type: ignore[no-untyped-def]
    collect.ingest(engine, spec, land(sim, root, batches))
    clean.clean_pending(engine, spec)


def test_late_grades_join_by_event_id_once(engine, spec, graded_later, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _ingest(engine, spec, graded_later, tmp_path, range(1))
    first = labeling.label_pending(engine, spec)
    assert first.by_source == {"ground_truth": first.rows} and first.summary["unlabeled"] > 0
    late_dir = tmp_path / "late"
    path = write_late_grades(graded_later.batch(0), late_dir)
    (late_dir / "resent.csv").write_bytes(path.read_bytes())  # the grader sends the same grades twice
    outcomes = labeling.ingest_label_files(engine, spec, late_dir, "late")
    assert sorted((o.accepted > 0, o.duplicates > 0) for o in outcomes) == [(False, True), (True, False)]
    second = labeling.label_pending(engine, spec)
    n_late = int(graded_later.batch(0).events["correct"].isna().sum())
    clean_rows = first.rows + first.summary["unlabeled"]
    assert second.created and second.by_source["late"] > 0.9 * n_late
    assert (
        second.rows == clean_rows - second.summary["unlabeled"]
        and second.summary["rows_added"] == second.by_source["late"]
    )
    truth = load_truth(tmp_path / "oracle").set_index("event_id")
    lab = _labels(engine, second.labeled_version_id or "")
    late = lab[lab["source"] == "late"]
    assert (late["label"].to_numpy() == truth.loc[late["event_id"], "true_correct"].to_numpy()).all()
    assert late["labeled_at"].notna().all() and set(late["labeler"]) == {"grader"}
    assert not labeling.label_pending(engine, spec).created  # nothing new since


def test_ground_truth_outranks_a_late_label(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _ingest(engine, spec, small_sim, tmp_path, range(1))
    first = labeling.label_pending(engine, spec)
    lab = _labels(engine, first.labeled_version_id or "")
    row = lab.iloc[0]
    labeling.record_label_events(
        engine,
        spec,
        [{"event_id": row["event_id"], "label": 1 - int(row["label"])}],
        "late",
        "test",
        "grader",
    )
    second = labeling.label_pending(engine, spec)
    after = _labels(engine, second.labeled_version_id or "").set_index("event_id")
    assert after.loc[row["event_id"], "source"] == "ground_truth"
    assert after.loc[row["event_id"], "label"] == row["label"] and second.relabeled == 0


def test_bad_label_files_are_rejected_and_audited(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _ingest(engine, spec, small_sim, tmp_path, range(1))
    folder = tmp_path / "late"
    folder.mkdir()
    (folder / "a.csv").write_text("event_id,label\ne000_0000_000,7\n")
    (folder / "b.csv").write_text("event_id,label\nno-such-event,1\n")
    (folder / "c.csv").write_text("id,grade\nx,1\n")
    out = {Path(o.path).name: o for o in labeling.ingest_label_files(engine, spec, folder, "late")}
    assert "0 or 1" in (out["a.csv"].error or "") and "not in any clean version" in (out["b.csv"].error or "")
    assert "needs columns" in (out["c.csv"].error or "")
    assert len(audit.events(engine, event_type="label_file_rejected")) == 2
    assert len(audit.events(engine, event_type="label_rows_rejected")) == 1


def test_champion_auto_labels_confident_rows_and_queues_uncertain_ones(
    engine,
    spec,
    graded_later,
    mlflow_cfg,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    spec = spec.model_copy(
        update={
            "label_policy": spec.label_policy.model_copy(
                update={"auto_label_min_confidence": 0.8, "review_budget": 50}
            )
        }
    )
    _ingest(engine, spec, graded_later, tmp_path, range(2))
    first = labeling.label_pending(engine, spec)
    req = train_to_request(engine, spec, mlflow_cfg, tmp_path, first.labeled_version_id or "")
    approve(engine, spec, mlflow_cfg, req["approval_request_id"])
    predictor = autolabel.champion_predictor(engine, spec, mlflow_cfg)
    assert predictor is not None and predictor.model_version == req["model_version"]

    _ingest(engine, spec, graded_later, tmp_path, range(2, 3))
    second = labeling.label_pending(engine, spec, predictor=predictor)
    lab = _labels(engine, second.labeled_version_id or "")
    auto = lab[lab["source"] == "auto"]
    assert len(auto) > 0 and (auto["confidence"] >= 0.8).all()
    assert set(auto["labeler"]) == {f"{spec.name}@v{req['model_version']}"}
    assert second.auto_share == pytest.approx(len(auto) / len(lab), abs=1e-4)
    truth = load_truth(tmp_path / "oracle").set_index("event_id")
    accuracy = (auto["label"].to_numpy() == truth.loc[auto["event_id"], "true_correct"].to_numpy()).mean()
    assert accuracy > 0.75  # the measured auto-label accuracy against the truth that arrives later

    queue = labeling.open_queue(engine, spec.name)
    assert len(queue) == second.queued == 50
    assert set(q["event_id"] for q in queue).isdisjoint(
        set(lab["event_id"])
    )  # only unlabeled rows are queued
    uncert = [q["uncertainty"] for q in queue]
    assert uncert == sorted(uncert, reverse=True)
    assert min(uncert) >= max(
        1 - abs(a - 0.5) * 2 for a in auto["confidence"]
    )  # the least sure rows, not the surest

    answers = answer_reviews(load_truth(tmp_path / "oracle"), [q["event_id"] for q in queue[:20]], "rita")
    accepted, dups = labeling.answer_reviews(engine, spec, answers.to_dict("records"), "rita", "api:rita")
    assert (accepted, dups) == (20, 0)
    assert labeling.answer_reviews(engine, spec, answers.to_dict("records"), "rita", "api:rita") == (0, 20)
    third = labeling.label_pending(engine, spec, predictor=predictor)
    human = _labels(engine, third.labeled_version_id or "").query("source == 'human'")
    assert len(human) == 20 and set(human["person"]) == {"rita"}
    with engine.connect() as conn:
        answered = (
            conn.execute(
                select(review_queue.c.status).where(review_queue.c.event_id.in_(list(answers["event_id"])))
            )
            .scalars()
            .all()
        )
    assert set(answered) == {"answered"}

    # evaluation never scores on model-made labels
    parts = time_split(training_frame(engine, spec, third.labeled_version_id or ""), spec)
    assert set(parts["test"]["source"]) <= {"ground_truth", "late", "human"}
    assert "auto" in set(parts["train"]["source"]) | set(parts["valid"]["source"]) | {"auto"}
    v = datasets.get(engine, third.labeled_version_id or "")
    assert v is not None and v.summary["by_source"]["human"] == 20


def test_review_answers_by_file_drop_record_the_person(engine, spec, graded_later, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _ingest(engine, spec, graded_later, tmp_path, range(1))
    labeling.label_pending(engine, spec)
    pending = graded_later.batch(0).events.query("correct.isna() and response_time_ms >= 1000")["event_id"][
        :5
    ]
    answers = answer_reviews(load_truth(tmp_path / "oracle"), list(pending), reviewer="maria")
    folder = tmp_path / "reviews"
    folder.mkdir()
    answers.to_csv(folder / "answers_monday.csv", index=False)
    [outcome] = labeling.ingest_label_files(engine, spec, folder, "human")
    assert (outcome.accepted, outcome.rejected) == (5, 0)
    assert labeling.ingest_label_files(engine, spec, folder, "human") == []  # the same file is not read twice
    result = labeling.label_pending(engine, spec)
    human = _labels(engine, result.labeled_version_id or "").query("source == 'human'")
    assert len(human) == 5 and set(human["person"]) == {"maria"}


def test_answers_only_for_open_queue_events_and_never_from_the_owner(
    sqlite_engine, spec, graded_later, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The data path refuses what the API would: an unqueued event (409, named) and the spec's owner (403)."""
    _ingest(sqlite_engine, spec, graded_later, tmp_path, range(1))
    labeling.label_pending(sqlite_engine, spec)
    event = graded_later.batch(0).events.query("correct.isna()")["event_id"].iloc[0]
    with pytest.raises(labeling.ReviewRefused) as err:
        labeling.answer_reviews(sqlite_engine, spec, [{"event_id": event, "label": 1}], "rita", "api:rita")
    assert err.value.status == 409 and err.value.event_ids == [event] and event in str(err.value)
    with pytest.raises(labeling.ReviewRefused) as owner:
        labeling.answer_reviews(sqlite_engine, spec, [{"event_id": event, "label": 1}], spec.owner, "api:x")
    assert owner.value.status == 403 and owner.value.code == "separation_of_duties"
    assert [e["event_type"] for e in audit.events(sqlite_engine, event_type="review_refused")] == [
        "review_refused"
    ] * 2
