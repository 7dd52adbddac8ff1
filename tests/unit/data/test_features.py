"""Point-in-time features: no leakage from the row itself or the future; one path for training and scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airgate.data.features import FEATURES, build_features


def _events(sim, n_batches: int = 1) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    df = pd.concat([sim.batch(b).events for b in range(n_batches)], ignore_index=True)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df


def test_features_ignore_the_rows_own_label_and_the_future(small_sim) -> None:  # type: ignore[no-untyped-def]
    ev = _events(small_sim)
    base = build_features(ev).set_index("event_id")
    cut = ev["ts"].sort_values().iloc[len(ev) // 2]
    flipped = ev.copy()
    later = flipped["ts"] >= cut
    flipped.loc[later, "correct"] = 1 - flipped.loc[later, "correct"].fillna(0)
    after = build_features(flipped).set_index("event_id")
    earlier_ids = ev.loc[ev["ts"] < cut, "event_id"]
    at_cut_ids = ev.loc[ev["ts"] == cut, "event_id"]
    pd.testing.assert_frame_equal(base.loc[earlier_ids, FEATURES], after.loc[earlier_ids, FEATURES])
    # rows at the cut had their own label flipped: their features must not move either
    pd.testing.assert_frame_equal(base.loc[at_cut_ids, FEATURES], after.loc[at_cut_ids, FEATURES])
    # ...and later rows do see the change, so the check above is not vacuous
    later_ids = ev.loc[ev["ts"] > cut, "event_id"]
    assert not np.allclose(base.loc[later_ids, "stu_rate"], after.loc[later_ids, "stu_rate"])


def test_rows_sharing_a_timestamp_do_not_see_each_other() -> None:
    ts = pd.Timestamp("2026-09-01T10:00:00Z")
    ev = pd.DataFrame(
        {
            "event_id": ["a", "b", "c"],
            "student_id": ["s1", "s2", "s3"],
            "item_id": ["i1"] * 3,
            "skill_id": ["k"] * 3,
            "ts": [ts, ts, ts + pd.Timedelta(seconds=1)],
            "correct": pd.array([1, 1, 0], dtype="Int64"),
        }
    )
    f = build_features(ev).set_index("event_id")
    assert f.loc["a", "item_attempts"] == f.loc["b", "item_attempts"] == 0
    assert f.loc["c", "item_attempts"] == pytest.approx(np.log1p(2))


def test_training_and_scoring_paths_give_identical_features(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from airgate.core import datasets
    from airgate.data.features import load_history
    from airgate.model.training import training_frame
    from tests.helpers import prepare_data

    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    train_side = training_frame(engine, spec, labeled).set_index("event_id")[FEATURES]
    # the scoring path: full history from the warehouse, then the target version's rows
    latest_clean = datasets.latest(engine, spec.name, "clean")
    assert latest_clean is not None
    hist = load_history(engine, spec.name)
    score_side = build_features(hist).set_index("event_id")[FEATURES]
    target = hist.loc[hist["version_id"] == latest_clean.version_id, "event_id"]
    common = train_side.index.intersection(target)
    assert len(common) > 100
    pd.testing.assert_frame_equal(train_side.loc[common].sort_index(), score_side.loc[common].sort_index())


def test_splits_are_by_time_and_grouped_by_student(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from airgate.model.training import time_split, training_frame
    from tests.helpers import prepare_data

    frame = training_frame(engine, spec, prepare_data(engine, spec, small_sim, tmp_path))
    parts = time_split(frame, spec)
    students = {k: set(v["student_id"]) for k, v in parts.items()}
    assert not (students["train"] & students["valid"]) and not (students["train"] & students["test"])
    assert not (students["valid"] & students["test"])
    first = frame.groupby("student_id")["ts"].min()
    assert (
        first[list(students["train"])].max() <= first[list(students["test"])].min()
    )  # later students are the test
    share = len(parts["train"]) / len(frame)
    assert abs(share - spec.splits.train) < 0.05


def test_the_history_reads_back_exactly_on_both_databases(engine) -> None:  # type: ignore[no-untyped-def]
    """The bulk read path (COPY on PostgreSQL, driver tuples on SQLite) returns what was written: ids with commas,
    quotes and leading zeros stay text, a missing grade stays missing, timestamps keep their microseconds in UTC."""
    from datetime import UTC, datetime, timedelta

    from airgate.core.warehouse import clean_events, dataset_versions, utcnow
    from airgate.data.features import load_history

    with engine.begin() as conn:
        conn.execute(
            dataset_versions.insert().values(
                version_id="clean-x",
                model="m",
                kind="clean",
                content_hash="h",
                row_count=3,
                parents=[],
                schema={},
                summary={},
                created_at=utcnow(),
            )
        )
    t0 = datetime(2026, 9, 3, 8, 0, 0, 123456, tzinfo=UTC)
    rows = [
        ("e,1", '0042"', "i 1", "k", t0, 1),
        ("e2", "s\\2", "i2", "k", t0 + timedelta(seconds=1), None),
        ("e3", "", "i3", "k", t0 + timedelta(days=1), 0),
    ]
    with engine.begin() as conn:
        conn.execute(
            clean_events.insert(),
            [
                {
                    "version_id": "clean-x",
                    "model": "m",
                    "event_id": e,
                    "student_id": s,
                    "item_id": i,
                    "skill_id": k,
                    "ts": ts,
                    "response_time_ms": 1500,
                    "answer": "A",
                    "correct": c,
                }
                for e, s, i, k, ts, c in rows
            ],
        )
    got = load_history(engine, "m").sort_values("event_id").reset_index(drop=True)
    assert got["event_id"].tolist() == ["e,1", "e2", "e3"]
    assert got["student_id"].tolist() == ['0042"', "s\\2", ""]
    assert got["ts"].tolist() == [pd.Timestamp(r[4]) for r in rows]
    assert got["correct"].tolist() == [1, pd.NA, 0]
    assert load_history(engine, "m", ["clean-y"]).empty
