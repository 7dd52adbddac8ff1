"""The knowledge-tracing simulator: seeded, realistic in the documented ways, and with a usable oracle."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from airgate.dev.simulator import COLUMNS, SimConfig, Simulator, load_truth, oracle_auc

pytestmark = pytest.mark.data


def test_same_seed_same_batch_and_batches_are_independent_of_order() -> None:
    a, b = Simulator(SimConfig(seed=3)), Simulator(SimConfig(seed=3))
    pd.testing.assert_frame_equal(a.batch(2).events, b.batch(2).events)  # no need to build batches 0 and 1
    assert not a.batch(2).events.equals(Simulator(SimConfig(seed=4)).batch(2).events)


def test_files_have_the_app_columns_and_some_rows_await_grading(tmp_path: Path) -> None:
    sim = Simulator(SimConfig(students_per_batch=100, ungraded_rate=0.05))
    path = sim.write_batch(0, tmp_path / "landing", tmp_path / "oracle")
    df = pd.read_csv(path)
    assert list(df.columns) == COLUMNS
    assert 0.02 < df["correct"].isna().mean() < 0.08
    assert not any(p.name.startswith(".") for p in (tmp_path / "landing").iterdir())  # written atomically
    truth = load_truth(tmp_path / "oracle")
    assert len(truth) == len(df) and truth["true_correct"].notna().all()  # the oracle knows every answer


def test_learning_guessing_and_rapid_guesses() -> None:
    sim = Simulator(SimConfig(students_per_batch=300))
    b = sim.batch(0)
    ev = b.events.merge(b.truth, on="event_id")
    ev["k"] = ev["event_id"].str[-3:].astype(int)
    early, late = ev[ev["k"] < 10]["true_p"].mean(), ev[ev["k"] >= 40]["true_p"].mean()
    assert late > early + 0.03  # abilities grow with practice
    assert ev["true_p"].min() >= sim.config.guess - 1e-9  # never below the guess rate
    rapid = ev[ev["rapid_guess"]]
    assert len(rapid) > 0 and (rapid["response_time_ms"] < 1000).all()
    assert abs(rapid["true_correct"].mean() - sim.config.guess) < 0.1


def test_new_cohort_drifts_on_demand() -> None:
    sim = Simulator(SimConfig(students_per_batch=300, new_cohort_from_batch=2, cohort_shift=-1.0))
    before, after = sim.batch(1).truth, sim.batch(2).truth
    assert set(before["cohort"]) == {"A"} and set(after["cohort"]) == {"B"}
    assert after["true_p"].mean() < before["true_p"].mean() - 0.08


def test_oracle_auc_is_the_ceiling_and_well_above_chance() -> None:
    b = Simulator(SimConfig(students_per_batch=300)).batch(0)
    o = oracle_auc(b.truth)
    assert 0.70 < o < 0.85
    noisy = b.truth.assign(true_p=b.truth["true_p"] + pd.Series(range(len(b.truth))).mod(7) * 0.05)
    assert oracle_auc(noisy) < o


def test_the_history_limit_sits_between_the_marginal_and_the_oracle() -> None:
    """A model that sees only history cannot reach the oracle: the particle filter shows how close it can get."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from airgate.dev.simulator import SimConfig, Simulator, history_limit

    sim = Simulator(SimConfig(students_per_batch=150, events_per_student=40))
    b = sim.batch(0)
    ev = b.events.assign(ts=pd.to_datetime(b.events["ts"], utc=True))
    truth = b.truth.set_index("event_id")
    roster = (
        ev[["event_id", "student_id"]]
        .merge(b.truth[["event_id", "grade", "cohort"]], on="event_id")
        .drop_duplicates("student_id")
        .rename(columns={"grade": "grade_level"})
    )
    p = history_limit(sim, ev, roster)
    assert list(p.index) != [] and set(p.index) == set(ev["event_id"])
    y = truth.loc[p.index, "true_correct"]
    limit = roc_auc_score(y, p.to_numpy())
    oracle = roc_auc_score(y, truth.loc[p.index, "true_p"])
    item_rate = ev.assign(y=y.reindex(ev["event_id"]).to_numpy()).groupby("item_id")["y"].transform("mean")
    marginal = roc_auc_score(y.reindex(ev["event_id"]), item_rate)
    assert marginal + 0.03 < limit < oracle - 0.01, (marginal, limit, oracle)
