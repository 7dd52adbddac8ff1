"""Gate logic: three states, and an unevaluated gate never passes (pure functions, no training needed)."""

from __future__ import annotations

import pytest

from airgate.gates import GateState, evaluate_gates, render_html

pytestmark = pytest.mark.unit

GOOD = {"test_auc": 0.70, "test_ece": 0.01, "repro_max_abs_diff": 0.0, "p95_latency_ms_per_1k": 2.0}
BASE = {"test_auc": 0.63}


def _states(spec, chosen, champion_auc=None):  # type: ignore[no-untyped-def]
    return {g.name: g.state for g in evaluate_gates(spec, chosen, BASE, champion_auc, "1" if champion_auc else None)}


def test_a_good_candidate_passes_every_evaluated_gate(spec) -> None:  # type: ignore[no-untyped-def]
    states = _states(spec, GOOD)
    assert states == {"beats_baseline": GateState.PASS, "no_worse_than_champion": GateState.NOT_EVALUATED,
                      "calibration": GateState.PASS, "reproducible": GateState.PASS,
                      "constraint_p95_latency_ms_per_1k": GateState.PASS}


@pytest.mark.parametrize(("change", "gate", "state"), [
    ({"test_auc": 0.635}, "beats_baseline", GateState.FAIL),
    ({"test_ece": 0.2}, "calibration", GateState.FAIL),
    ({"repro_max_abs_diff": 1e-3}, "reproducible", GateState.FAIL),
    ({"p95_latency_ms_per_1k": 250.0}, "constraint_p95_latency_ms_per_1k", GateState.FAIL),
    ({"test_ece": None}, "calibration", GateState.NOT_EVALUATED),
    ({"repro_max_abs_diff": None}, "reproducible", GateState.NOT_EVALUATED),
])
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

    evidence = {"model": "m<script>", "training_run_id": "tr-1", "data_version": "labeled-x", "code_version": "abc",
                "approvable": True, "metrics": {"lightgbm": GOOD},
                "gates": [asdict(g) for g in evaluate_gates(spec, GOOD, BASE, None, None)]}
    page = render_html(evidence, "f" * 64)
    assert "m&lt;script&gt;" in page and "<script>" not in page and "not_evaluated" in page
