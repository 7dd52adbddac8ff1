"""Multi-objective selection rules, constraints, the Pareto front and the spec's tuning fields (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgate.core.spec import SpecError, load_spec
from airgate.model import tuning


def pt(cand: str, trial: int, auc: float, lat: float, spec) -> tuning.Point:  # type: ignore[no-untyped-def]
    m = {"auc": auc, "p95_latency_ms_per_1k": lat}
    return tuning.Point(cand, trial, {"t": trial}, m, tuning.is_feasible(spec, m))


def test_constraints_follow_optunas_convention(spec) -> None:  # type: ignore[no-untyped-def]
    # shipped spec: p95 latency <= 100 ms per 1,000 rows
    assert tuning.violations(spec, {"p95_latency_ms_per_1k": 40.0}) == [-60.0]
    assert tuning.is_feasible(spec, {"p95_latency_ms_per_1k": 100.0})
    assert not tuning.is_feasible(spec, {"p95_latency_ms_per_1k": 100.5})
    assert not tuning.is_feasible(spec, {}), "an unmeasured constrained metric is never feasible"


def test_front_keeps_only_non_dominated_feasible_points(spec) -> None:  # type: ignore[no-untyped-def]
    points = [
        pt("a", 0, 0.70, 10, spec),
        pt("a", 1, 0.72, 30, spec),
        pt("a", 2, 0.69, 40, spec),  # 2 dominated
        pt("b", 0, 0.80, 500, spec),
    ]  # best AUC but breaks the latency limit
    on = {(p.candidate, p.trial) for p in tuning.front(points, spec)}
    assert on == {("a", 0), ("a", 1)}


def test_selection_rule_best_auc_among_feasible(spec) -> None:  # type: ignore[no-untyped-def]
    points = [pt("a", 0, 0.70, 10, spec), pt("a", 1, 0.72, 30, spec), pt("b", 0, 0.80, 500, spec)]
    assert (tuning.select(points, spec).candidate, tuning.select(points, spec).trial) == ("a", 1)
    among_all = spec.model_copy(
        update={
            "tuning": spec.tuning.model_copy(
                update={"select": spec.tuning.select.model_copy(update={"among": "all"})}
            )
        }
    )
    assert tuning.select(points, among_all).candidate == "b"
    fastest = spec.model_copy(
        update={
            "tuning": spec.tuning.model_copy(
                update={
                    "select": spec.tuning.select.model_copy(
                        update={"metric": "p95_latency_ms_per_1k", "direction": "minimize"}
                    )
                }
            )
        }
    )
    assert tuning.select(points, fastest).trial == 0


def test_nothing_feasible_means_nothing_chosen(spec) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(tuning.NoFeasiblePoint, match="constraints"):
        tuning.select([pt("b", 0, 0.8, 500, spec)], spec)


def test_hypervolume_grows_with_a_better_front(spec) -> None:  # type: ignore[no-untyped-def]
    ref = [0.5, 100.0]
    weak = [pt("a", 0, 0.60, 50, spec)]
    strong = weak + [pt("a", 1, 0.70, 20, spec)]
    hv_weak, hv_strong = tuning.hypervolume(weak, spec, ref), tuning.hypervolume(strong, spec, ref)
    assert hv_weak == pytest.approx((0.60 - 0.5) * (100 - 50))
    assert hv_strong == pytest.approx((0.70 - 0.5) * (100 - 20))  # the second point dominates the first
    assert tuning.hypervolume([pt("b", 0, 0.9, 500, spec)], spec, ref) == 0.0  # infeasible adds nothing


def test_plot_marks_the_chosen_point(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    points = [pt("a", i, 0.6 + i / 100, 5 + i, spec) for i in range(5)]
    out = tuning.plot_front(points, spec, points[-1], str(tmp_path / "p.png"))
    assert out and Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(out).stat().st_size > 5_000


def _spec_with(tmp_path: Path, text: str, old: str, new: str) -> Path:
    path = tmp_path / "knowledge_tracing.yaml"
    assert old in text
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        (
            "{metric: auc, direction: maximize}\n  - {metric: p95",
            "{metric: accuracy, direction: maximize}\n  - {metric: p95",
            "(top level)",
            "unknown metric 'accuracy'",
        ),
        (
            "num_leaves: {type: int, low: 4, high: 128, log: true}",
            "num_leaves: {type: int, low: 128, high: 4}",
            "candidates[1].search.num_leaves",
            "low' <= 'high",
        ),
        ("sampler: tpe", "sampler: grid", "tuning.sampler", "use one of"),
        ("roster: catalog/knowledge_tracing_students.csv", "roster: null", "slices", "roster"),
    ],
)
def test_tuning_spec_errors_name_the_field(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    from airgate.core.spec import DEFAULT_SPECS_DIR

    text = (DEFAULT_SPECS_DIR / "knowledge_tracing.yaml").read_text()
    with pytest.raises(SpecError) as err:
        load_spec(_spec_with(tmp_path, text, old, new))
    msg = str(err.value)
    assert "knowledge_tracing.yaml" in msg and words in msg and "Fix:" in msg
    if field != "(top level)":
        assert field.split(".")[0] in msg


def test_workers_share_one_study_in_the_warehouse(engine, spec) -> None:  # type: ignore[no-untyped-def]
    """Two workers on one study (SQLite and PostgreSQL): together they finish the budget, not twice over."""
    import threading

    import optuna

    cand = next(c for c in spec.candidates if c.kind == "lightgbm")
    url = engine.url.render_as_string(hide_password=False)
    seen: list[int] = []

    def evaluate(params):  # type: ignore[no-untyped-def]
        seen.append(params["num_leaves"])
        return {"auc": 0.6 + params["learning_rate"], "p95_latency_ms_per_1k": float(params["num_leaves"])}

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            tuning.run_study(spec, cand, url, "shared:lightgbm", evaluate, n_trials=8)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    tuning.init_storage(url)  # train.prepare does this before the candidates fan out
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    study = optuna.load_study(study_name="shared:lightgbm", storage=url)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    states = sorted(str(t.state) for t in study.trials)
    assert 8 <= len(done) <= 9, states  # at most one in flight when the budget filled up
    assert len(seen) <= len(done) + 1, states
    # a later worker (a retry) finds the budget spent and runs nothing
    before = len(seen)
    points = tuning.run_study(spec, cand, url, "shared:lightgbm", evaluate, n_trials=8)
    assert len(points) == len(done) and len(seen) == before
