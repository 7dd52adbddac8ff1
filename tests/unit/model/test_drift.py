"""Evidently data drift: quiet on the same distribution, loud on a shift (in the right columns), bounded in cost."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airgate.data.features import FEATURES, build_features
from airgate.dev.simulator import SimConfig, Simulator
from airgate.model.drift import ALL_MISSING, DriftResult, drift_report

pytestmark = pytest.mark.data

SHIFTED = FEATURES[
    :7
]  # a majority of the 13, so that the dataset as a whole drifts at the default share of 0.5


def _frame(seed: int, n: int, shift: list[str] | None = None) -> pd.DataFrame:
    """Normal columns on different scales; ``shift`` moves the named ones by one standard deviation."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(0.5, 5.0, len(FEATURES))
    df = pd.DataFrame(rng.normal(size=(n, len(FEATURES))) * scales, columns=FEATURES)
    for c in shift or []:
        df[c] += scales[FEATURES.index(c)]
    return df


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> DriftResult:
    return drift_report(
        _frame(1, 3000),
        _frame(2, 3000, SHIFTED),
        FEATURES,
        tmp_path_factory.mktemp("shifted"),
        title="Shifted <features>",
    )


@pytest.fixture(scope="module")
def sim_features() -> pd.DataFrame:
    """Real features over three batches (cumulative history, as in production); batch 2 is a weaker cohort."""
    sim = Simulator(
        SimConfig(students_per_batch=200, events_per_student=50, new_cohort_from_batch=2, cohort_shift=-1.0)
    )
    events = pd.concat([sim.batch(b).events for b in range(3)], ignore_index=True)
    feats = build_features(events)
    feats["batch"] = feats["event_id"].str[1:4].astype(int)
    return feats


def test_two_samples_of_the_same_data_do_not_drift(sim_features: pd.DataFrame, tmp_path: Path) -> None:
    train = sim_features[sim_features["batch"] < 2]
    half = train.sample(frac=0.5, random_state=3)
    r = drift_report(half, train.drop(half.index), FEATURES, tmp_path)
    assert not r.dataset_drift and r.drift_share <= 1 / 13, r.summary()
    assert [c.column for c in r.columns] == FEATURES
    r2 = drift_report(_frame(1, 3000), _frame(2, 3000), FEATURES, tmp_path / "synthetic")
    assert not r2.dataset_drift and r2.drift_share == 0.0, r2.summary()


def test_shifted_columns_are_the_drifted_ones(shifted: DriftResult) -> None:
    assert shifted.dataset_drift and shifted.drift_share == pytest.approx(7 / 13)
    assert sorted(c.column for c in shifted.columns if c.drifted) == sorted(SHIFTED)
    # 3,000 rows a side: Evidently's default for numbers is the normed Wasserstein distance, drift at >= 0.1
    assert {c.method for c in shifted.columns} == {"Wasserstein distance (normed)"}
    assert all((c.score >= c.threshold) == c.drifted for c in shifted.columns)


def test_a_weaker_cohort_drifts_the_ability_features_only(sim_features: pd.DataFrame, tmp_path: Path) -> None:
    train, latest = sim_features[sim_features["batch"] < 2], sim_features[sim_features["batch"] == 2]
    r = drift_report(train, latest, FEATURES, tmp_path, title="Cohort B")
    drifted = set(r.summary()["drifted"])
    assert r.dataset_drift, r.summary()
    assert {"stu_rate", "stu_skill_rate", "stu_recent_rate", "stu_resid"} <= drifted
    # practice counts and gaps do not depend on ability: the shift must not show there
    assert not drifted & {"stu_attempts", "stu_skill_attempts", "log_gap_s"}
    assert (r.reference_rows, r.current_rows) == (len(train), len(latest))


def test_html_and_json_are_written_and_the_summary_round_trips(shifted: DriftResult) -> None:
    import evidently

    page = Path(shifted.html_path).read_text(encoding="utf-8")
    assert len(page) > 500_000  # Evidently's page inlines its scripts: nothing to fetch when it is opened
    assert "window.drawDashboard" in page and "Share of Drifted Columns" in page and "Dataset Drift" in page
    assert "<title>Shifted &lt;features&gt;</title>" in page
    doc = json.loads(Path(shifted.json_path).read_text())
    assert doc["summary"] == shifted.summary()
    assert json.loads(json.dumps(shifted.summary())) == shifted.summary()
    assert doc["columns"] == [asdict(c) for c in shifted.columns]
    assert doc["evidently"]["version"] == evidently.__version__
    value_drift = [m for m in doc["evidently"]["metrics"] if m["config"]["type"].endswith(":ValueDrift")]
    assert sorted(m["config"]["column"] for m in value_drift) == sorted(FEATURES)
    assert not any(
        p.name.startswith(".") for p in Path(shifted.html_path).parent.iterdir()
    )  # written atomically


def test_rows_are_capped_by_seeded_sampling(tmp_path: Path) -> None:
    ref, cur = _frame(1, 5000), _frame(2, 1200, SHIFTED[:2])

    def run(seed: int, name: str) -> DriftResult:
        return drift_report(ref, cur, FEATURES, tmp_path / name, max_rows=400, seed=seed)

    a, b, c = run(0, "a"), run(0, "b"), run(1, "c")
    assert (a.reference_rows, a.current_rows) == (400, 400)
    assert a.columns == b.columns  # same seed: same rows, same scores
    assert [x.score for x in a.columns] != [x.score for x in c.columns]
    assert a.columns[0].method == "K-S p_value"  # at 400 rows Evidently tests p-values, not distances
    small = drift_report(ref.head(300), cur.head(200), FEATURES[:2], tmp_path / "small", max_rows=400)
    assert (small.reference_rows, small.current_rows) == (300, 200)


def test_constant_missing_and_categorical_columns(tmp_path: Path) -> None:
    ref, cur = _frame(1, 2000), _frame(2, 2000)
    for df in (ref, cur):
        df["constant"] = 1.0
        df["nullable"] = pd.array(
            np.where(np.arange(len(df)) % 3 == 0, None, df["stu_rate"]), dtype="Float64"
        )
        df["skill"] = "k0"
    ref.loc[::4, "stu_rate"] = np.nan
    cur.loc[5, "item_rate"] = np.inf
    cur["gone"], ref["gone"] = np.nan, 1.5
    ref["never"] = cur["never"] = np.nan
    rng = np.random.default_rng(0)
    ref["skill"] = rng.choice(["k0", "k1", "k2"], size=len(ref))
    cur["skill"] = rng.choice(["k0", "k1", "k2"], size=len(cur), p=[0.7, 0.2, 0.1])
    ref["grade"], cur["grade"] = rng.integers(6, 9, len(ref)), rng.integers(6, 9, len(cur))
    cols = ["stu_rate", "item_rate", "constant", "nullable", "skill", "grade", "gone", "never"]
    r = drift_report(ref, cur, cols, tmp_path, categorical=["grade"])
    by = {c.column: c for c in r.columns}
    assert not by["constant"].drifted and not by["nullable"].drifted and not by["stu_rate"].drifted
    assert not by["item_rate"].drifted and not by["grade"].drifted
    assert by["skill"].drifted
    assert by["gone"].drifted and by["gone"].method == ALL_MISSING
    assert not by["never"].drifted
    doc = json.loads(Path(r.json_path).read_text())
    assert doc["missing_share"]["stu_rate"]["reference"] == pytest.approx(0.25)
    assert doc["categorical"] == ["skill", "grade"]


def test_bad_inputs_are_refused_with_the_reason(tmp_path: Path) -> None:
    ref = _frame(1, 100)
    with pytest.raises(ValueError, match="current frame is empty"):
        drift_report(ref, ref.iloc[0:0], FEATURES, tmp_path)
    with pytest.raises(ValueError, match="reference frame is empty"):
        drift_report(ref.iloc[0:0], ref, FEATURES, tmp_path)
    with pytest.raises(ValueError, match=r"missing from the current frame: \['stu_rate'\]"):
        drift_report(ref, ref.drop(columns="stu_rate"), FEATURES, tmp_path)
    with pytest.raises(ValueError, match="no columns"):
        drift_report(ref, ref, [], tmp_path)
    assert not (tmp_path / "drift.html").exists()


def test_cost_of_a_capped_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Evidently's cost is mostly per column; rows are capped. Printed, not asserted: machines differ."""
    import evidently  # noqa: F401  (the import, a few seconds once per process, is not part of the figure)

    cur = _frame(2, 20_000)
    r20 = drift_report(_frame(1, 20_000), cur, FEATURES, tmp_path / "20k")
    r100 = drift_report(_frame(1, 100_000), cur, FEATURES, tmp_path / "100k")
    assert r100.reference_rows == 20_000 and not r100.dataset_drift
    with capsys.disabled():
        print(
            f"\ndrift report, 20k x {len(FEATURES)}: {r20.seconds:.2f}s; "
            f"100k reference capped at 20k: {r100.seconds:.2f}s"
        )
    assert r20.seconds < 120 and r100.seconds < 120
