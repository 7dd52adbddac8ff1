"""The choice among candidates by the spec's rule, before anyone looks at the test split, and its Pareto evidence."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from airgate.core import storage
from airgate.core.spec import ModelSpec
from airgate.model import tuning
from airgate.model.contracts import CandidateResult, TrainConfig, run_dir


@dataclass(frozen=True)
class Selection:
    chosen: CandidateResult
    baseline: str  # the baseline candidate's name: always scored on the test rows, never chosen
    points: list[tuning.Point]  # every trial of every candidate


def baseline_name(spec: ModelSpec) -> str:
    return next(c.name for c in spec.candidates if c.kind == "baseline")


def select_candidate(cfg: TrainConfig, results: list[CandidateResult]) -> Selection:
    """Each candidate's chosen configuration competes by the spec's rule; the baseline never does.

    Raises ``tuning.NoFeasiblePoint`` when nothing meets the constraints: then nothing may be chosen.
    """
    spec = cfg.spec
    by_name = {r.candidate: r for r in results}
    missing = [c.name for c in spec.candidates if c.name not in by_name]
    if missing:
        raise ValueError(f"candidates {missing} have no result for {cfg.training_run_id}")
    baseline = baseline_name(spec)
    reps = [r.representative() for r in results if r.candidate != baseline]
    chosen = by_name[tuning.select(reps, spec).candidate]
    return Selection(chosen, baseline, [p for r in results for p in r.points])


def write_pareto(cfg: TrainConfig, selection: Selection) -> dict[str, Any]:
    """The overall Pareto front as JSON and as a plot in the run's folder; returns the JSON with both paths."""
    spec, points, chosen = cfg.spec, selection.points, selection.chosen
    overall = {(p.candidate, p.trial) for p in tuning.front(points, spec)}
    out = run_dir(cfg)
    pareto: dict[str, Any] = {
        "size": len(overall),
        "trials": len(points),
        "objectives": [o.model_dump() for o in spec.objectives],
        "chosen": {
            "candidate": chosen.candidate,
            "trial": chosen.chosen_trial,
            "params": chosen.params,
            "valid": chosen.valid,
        },
        "points": [dict(p.to_dict(), on_front=(p.candidate, p.trial) in overall) for p in points],
    }
    pareto_path = storage.write_text_atomic(out / "pareto.json", json.dumps(pareto, indent=1, default=float))
    star = next(
        (p for p in points if (p.candidate, p.trial) == (chosen.candidate, chosen.chosen_trial)), None
    )  # the trial as it was measured, so the star sits on its own point
    plot = tuning.plot_front(points, spec, star, out / "pareto.png")
    pareto["path"], pareto["plot"] = storage.as_string(pareto_path), plot
    return pareto
