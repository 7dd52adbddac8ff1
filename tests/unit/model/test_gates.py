"""Gate logic: three states, and an unevaluated gate never passes (pure functions, no training needed)."""

from __future__ import annotations

import pytest

from airgate.model.gates import GateState, evaluate_gates, render_html

GOOD = {"test_auc": 0.70, "test_ece": 0.01, "repro_max_abs_diff": 0.0, "p95_latency_ms_per_1k": 2.0}
BASE = {"test_auc": 0.63}


def _states(spec, chosen, champion_auc=None):  # type: ignore[no-untyped-def]
    return {
        g.name: g.state
        for g in evaluate_gates(spec, chosen, BASE, champion_auc, "1" if champion_auc else None)
    }


def test_a_good_candidate_passes_every_evaluated_gate(spec) -> None:  # type: ignore[no-untyped-def]
    states = _states(spec, GOOD)
    assert states == {
        "beats_baseline": GateState.PASS,
        "no_worse_than_champion": GateState.NOT_EVALUATED,
        "calibration": GateState.PASS,
        "reproducible": GateState.PASS,
        "constraint_p95_latency_ms_per_1k": GateState.PASS,
    }


@pytest.mark.parametrize(
    ("change", "gate", "state"),
    [
        ({"test_auc": 0.635}, "beats_baseline", GateState.FAIL),
        ({"test_ece": 0.2}, "calibration", GateState.FAIL),
        ({"repro_max_abs_diff": 1e-3}, "reproducible", GateState.FAIL),
        ({"p95_latency_ms_per_1k": 250.0}, "constraint_p95_latency_ms_per_1k", GateState.FAIL),
        ({"test_ece": None}, "calibration", GateState.NOT_EVALUATED),
        ({"repro_max_abs_diff": None}, "reproducible", GateState.NOT_EVALUATED),
    ],
)
def test_each_gate_fails_or_is_not_evaluated(spec, change, gate, state) -> None:  # type: ignore[no-untyped-def]
    chosen = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    gates = evaluate_gates(spec, chosen, BASE, None, None)
    g = next(g for g in gates if g.name == gate)
    assert g.state == state
    assert g.blocking_if_not_evaluated or g.state != GateState.NOT_EVALUATED


def test_champion_gate_uses_the_tolerance(spec) -> None:  # type: ignore[no-untyped-def]
    assert _states(spec, GOOD, champion_auc=0.703)["no_worse_than_champion"] == GateState.PASS
    assert _states(spec, GOOD, champion_auc=0.71)["no_worse_than_champion"] == GateState.FAIL


def test_evidence_page_escapes_everything(spec) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import asdict

    evidence = {
        "model": "m<script>",
        "training_run_id": "tr-1",
        "data_version": "labeled-x",
        "code_version": "abc",
        "approvable": True,
        "metrics": {"lightgbm": GOOD},
        "gates": [asdict(g) for g in evaluate_gates(spec, GOOD, BASE, None, None)],
    }
    page = render_html(evidence, "f" * 64)
    assert "m&lt;script&gt;" in page and "<script>" not in page and "not_evaluated" in page


def _slice_rows(tmp_home, seed: int, noisy_grade: str | None):  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = 1500
    students = [f"s{i:04d}" for i in range(300)]
    roster = pd.DataFrame(
        {"student_id": students, "grade_level": [str(6 + i % 3) for i in range(300)], "cohort": ["A"] * 300}
    )
    (tmp_home / "catalog").mkdir(parents=True, exist_ok=True)
    roster.to_csv(tmp_home / "catalog" / "knowledge_tracing_students.csv", index=False)
    sid = rng.choice(students, n)
    true_p = rng.uniform(0.2, 0.9, n)
    label = (rng.random(n) < true_p).astype(int)
    grade = roster.set_index("student_id").loc[sid, "grade_level"].to_numpy()
    p = np.where(grade == noisy_grade, rng.uniform(0, 1, n), true_p) if noisy_grade else true_p
    return pd.DataFrame(
        {"event_id": [f"e{i}" for i in range(n)], "student_id": sid, "label": label, "p_m": p}
    )


def test_slice_gap_gate_catches_a_slice_the_model_fails(spec, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from airgate.model.gates import slice_gate

    monkeypatch.setenv("AIRGATE_HOME", str(tmp_path))
    fair, table = slice_gate(spec, _slice_rows(tmp_path, 1, None), "p_m")
    assert fair.state == GateState.PASS and table["grade_level"]["compared"] == 3
    assert table["cohort"]["compared"] == 1 and table["cohort"]["gap"] == 0.0
    unfair, table = slice_gate(spec, _slice_rows(tmp_path, 1, "8"), "p_m")
    assert (
        unfair.state == GateState.FAIL
        and unfair.observed is not None
        and unfair.observed > spec.gates.max_slice_gap
    )
    assert table["grade_level"]["slices"]["8"]["auc"] < 0.6 and "grade_level" in unfair.detail


def test_slice_gate_without_its_roster_is_not_evaluated_and_blocks(spec, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from airgate.model.gates import blocks, slice_gate

    monkeypatch.setenv("AIRGATE_HOME", str(tmp_path / "empty"))
    g, _ = slice_gate(spec, _slice_rows(tmp_path, 1, None), "p_m")
    assert g.state == GateState.NOT_EVALUATED and blocks(g) and "not found" in g.detail
    no_slices = spec.model_copy(update={"slices": spec.slices.model_copy(update={"by": [], "roster": None})})
    g, _ = slice_gate(no_slices, _slice_rows(tmp_path, 1, None), "p_m")
    assert g.state == GateState.NOT_EVALUATED and not blocks(g)


def test_advisory_gates_never_block_but_blocking_ones_do() -> None:
    from airgate.model.gates import Gate, blocks

    assert not blocks(Gate("data_drift", GateState.FAIL, 0.9, 0.5, "drift", blocking=False))
    assert blocks(Gate("data_drift", GateState.FAIL, 0.9, 0.5, "drift", blocking=True))
    assert not blocks(Gate("x", GateState.PASS, 1, 1, "ok"))
