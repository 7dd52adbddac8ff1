"""Multi-objective tuning with Optuna: objectives, constraints and the selection rule all come from the spec.

The study lives in the warehouse database (Optuna's RDB storage), named ``<training run>:<candidate>``, so trials
of one study can run on several workers or pods at once, and a retried task resumes its study instead of starting
over: only the missing trials run. The candidate's fixed parameters are always the first trial, so tuning can
never return something worse than the configuration a person wrote down.

Every objective is a validation metric. The test split never reaches this module.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from airgate.core import storage
from airgate.core.spec import Candidate, ModelSpec

log = logging.getLogger(__name__)

Metrics = dict[str, float]


@dataclass(frozen=True)
class Point:
    """One finished trial: what was tried and everything measured on validation."""

    candidate: str
    trial: int
    params: dict[str, Any]
    metrics: Metrics
    feasible: bool
    on_front: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "trial": self.trial,
            "params": self.params,
            "metrics": self.metrics,
            "feasible": self.feasible,
            "on_front": self.on_front,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Point:
        return cls(
            d["candidate"],
            int(d["trial"]),
            dict(d["params"]),
            {k: float(v) for k, v in d["metrics"].items()},
            bool(d["feasible"]),
            bool(d.get("on_front", False)),
        )


def violations(spec: ModelSpec, metrics: Metrics) -> list[float]:
    """Optuna's constraint convention: one value per bound, feasible when every value is <= 0."""
    out: list[float] = []
    for c in spec.constraints:
        v = metrics.get(c.metric, math.inf)
        if c.max is not None:
            out.append(v - c.max)
        if c.min is not None:
            out.append(c.min - v)
    return out


def is_feasible(spec: ModelSpec, metrics: Metrics) -> bool:
    return all(v <= 0 for v in violations(spec, metrics))


def objective_values(spec: ModelSpec, metrics: Metrics) -> list[float]:
    return [metrics[o.metric] for o in spec.objectives]


def suggest(trial: Any, cand: Candidate) -> dict[str, Any]:
    params = dict(cand.params)
    for name, p in sorted(cand.search.items()):
        if p.type == "categorical":
            params[name] = trial.suggest_categorical(name, p.choices)
        elif p.type == "int":
            params[name] = trial.suggest_int(name, int(p.low or 0), int(p.high or 0), log=p.log)
        else:
            params[name] = trial.suggest_float(name, float(p.low or 0), float(p.high or 0), log=p.log)
    return params


def sampler(spec: ModelSpec, kind: str | None = None, n_objectives: int = 1) -> Any:
    import optuna

    kind = kind or spec.tuning.sampler
    seed = spec.tuning.seed
    # Constraints reach the samplers through Trial.set_constraint (Optuna 5; constraints_func is deprecated).
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, multivariate=True)


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    better = False
    for x, y, d in zip(a, b, directions, strict=True):
        x, y = (x, y) if d == "minimize" else (-x, -y)
        if x > y:
            return False
        better = better or x < y
    return better


def front(points: list[Point], spec: ModelSpec) -> list[Point]:
    """Non-dominated points, computed the same way for one candidate or for all of them together.

    Feasible points dominate infeasible ones (constrained domination), so an infeasible point is on the front only
    when nothing feasible exists."""
    directions = [o.direction for o in spec.objectives]
    pool = [p for p in points if p.feasible] or points
    vals = {id(p): objective_values(spec, p.metrics) for p in pool}
    return [
        p
        for p in pool
        if not any(dominates(vals[id(q)], vals[id(p)], directions) for q in pool if q is not p)
    ]


def select(points: list[Point], spec: ModelSpec, among: str | None = None) -> Point:
    """The spec's rule: best ``select.metric`` among feasible points (or all). Ties go to the earlier trial.
    ``among`` overrides the spec's pool."""
    rule = spec.tuning.select
    pool = [p for p in points if p.feasible] if (among or rule.among) == "feasible" else list(points)
    if not pool:
        raise NoFeasiblePoint(f"no trial meets the constraints {[c.model_dump() for c in spec.constraints]}")
    sign = -1.0 if rule.direction == "maximize" else 1.0
    return min(pool, key=lambda p: (sign * p.metrics[rule.metric], p.candidate, p.trial))


class NoFeasiblePoint(ValueError):
    """Every trial broke a constraint: nothing may be chosen."""


def init_storage(storage_url: str) -> None:
    """Create Optuna's tables in the warehouse once, before workers fan out: concurrent first use races."""
    _storage(storage_url)


def _storage(storage_url: str) -> Any:
    """Optuna's storage in the warehouse. On SQLite its transactions start with BEGIN IMMEDIATE, as the
    warehouse's own do: SQLite ignores Optuna's SELECT ... FOR UPDATE, so without the write lock two workers
    could pop the same queued trial and both evaluate it."""
    import optuna

    from airgate.core.warehouse import sqlite_write_locking

    storage = optuna.storages.RDBStorage(url=storage_url, engine_kwargs=_engine_kwargs(storage_url))
    if storage_url.startswith("sqlite"):
        sqlite_write_locking(storage.engine)
    return storage


def run_study(
    spec: ModelSpec,
    cand: Candidate,
    storage_url: str,
    study_name: str,
    evaluate: Callable[[dict[str, Any]], Metrics],
    n_trials: int | None = None,
    on_trial: Callable[[int, dict[str, Any], Metrics], None] | None = None,
    sampler_kind: str | None = None,
) -> list[Point]:
    """Run (or resume) the candidate's study until it holds ``n_trials`` finished trials; return every point."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = [o.direction for o in spec.objectives]
    storage = _storage(storage_url)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        directions=directions,
        load_if_exists=True,
        sampler=sampler(spec, sampler_kind, len(directions)),
    )
    total = n_trials or cand.n_trials or spec.tuning.n_trials
    if not cand.search:
        total = 1  # nothing to tune: the fixed configuration is the only point
    if not study.trials:
        study.enqueue_trial({k: v for k, v in cand.params.items() if k in cand.search}, skip_if_exists=True)

    def objective(trial: Any) -> list[float]:
        params = suggest(trial, cand)
        metrics = evaluate(params)
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("params", params)
        for i, v in enumerate(violations(spec, metrics)):
            trial.set_constraint(f"c{i}", v)
        if on_trial is not None:
            on_trial(trial.number, params, metrics)
        return objective_values(spec, metrics)

    # Other workers may be filling the same study: stop once the study as a whole has its trials.
    stop = optuna.study.MaxTrialsCallback(total, states=(optuna.trial.TrialState.COMPLETE,))
    for _ in range(5):
        remaining = total - sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
        if remaining <= 0:
            break
        try:
            study.optimize(objective, n_trials=remaining, gc_after_trial=False, callbacks=[stop])
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
            # SQLite has no row locks: two workers can pop the same queued trial, and the loser finds it finished,
            # either while writing to it or when telling its result ("Cannot tell a COMPLETE trial"). It goes on.
            if isinstance(exc, ValueError) and not str(exc).startswith("Cannot tell a"):
                raise
            log.info("study %s: another worker took the same queued trial; continuing", study_name)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    points = [
        Point(
            cand.name,
            t.number,
            t.user_attrs["params"],
            t.user_attrs["metrics"],
            is_feasible(spec, t.user_attrs["metrics"]),
        )
        for t in sorted(done, key=lambda t: t.number)
    ]
    on_front = {p.trial for p in front(points, spec)}
    return [Point(p.candidate, p.trial, p.params, p.metrics, p.feasible, p.trial in on_front) for p in points]


def _engine_kwargs(url: str) -> dict[str, Any]:
    # Several workers may write one SQLite study at once: wait for the lock instead of failing.
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}


def hypervolume(points: list[Point], spec: ModelSpec, reference: list[float]) -> float:
    """Hypervolume of the feasible points against ``reference`` (in the objectives' own units and directions)."""
    import numpy as np
    from optuna._hypervolume import compute_hypervolume  # no public equivalent in Optuna 5.0

    signs = np.array([1.0 if o.direction == "minimize" else -1.0 for o in spec.objectives])
    feas = [objective_values(spec, p.metrics) for p in points if p.feasible]
    if not feas:
        return 0.0
    loss = np.asarray(feas) * signs
    ref = np.asarray(reference) * signs
    loss = loss[(loss < ref).all(axis=1)]
    return float(compute_hypervolume(loss, ref)) if len(loss) else 0.0


def plot_front(
    points: list[Point], spec: ModelSpec, chosen: Point | None, path: storage.Location
) -> str | None:
    """The Pareto plot of the first two objectives, every candidate's trials, the front and the chosen point.

    Written to storage (``path``, any ``storage.location``) whole; returns it as ``storage.as_string``."""
    if len(spec.objectives) < 2 or not points:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_m, y_m = spec.objectives[0].metric, spec.objectives[1].metric
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    overall = {(p.candidate, p.trial) for p in front(points, spec)}
    for i, name in enumerate(sorted({p.candidate for p in points})):
        mine = [p for p in points if p.candidate == name]
        color = f"C{i}"
        ax.scatter(
            [p.metrics[x_m] for p in mine],
            [p.metrics[y_m] for p in mine],
            s=18,
            alpha=0.35,
            color=color,
            label=f"{name} trials",
        )
        best = [p for p in mine if (p.candidate, p.trial) in overall]
        if best:
            ax.scatter(
                [p.metrics[x_m] for p in best],
                [p.metrics[y_m] for p in best],
                s=46,
                color=color,
                edgecolor="black",
                label=f"{name} on the front",
            )
    for c in spec.constraints:
        for metric, axis in ((x_m, "x"), (y_m, "y")):
            if c.metric == metric:
                for bound in (c.max, c.min):
                    if bound is not None:
                        (ax.axvline if axis == "x" else ax.axhline)(bound, color="#b42318", ls="--", lw=1)
    if chosen is not None:
        ax.scatter(
            [chosen.metrics[x_m]],
            [chosen.metrics[y_m]],
            marker="*",
            s=260,
            color="gold",
            edgecolor="black",
            label="chosen",
            zorder=5,
        )
    ax.set_xlabel(f"validation {x_m} ({spec.objectives[0].direction})")
    ax.set_ylabel(f"validation {y_m} ({spec.objectives[1].direction})")
    if y_m.startswith("p95_latency") or y_m.startswith("model_size"):
        ax.set_yscale("log")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{spec.name}: Pareto front ({len(overall)} of {len(points)} trials)", fontsize=10)
    fig.tight_layout()
    target = storage.location(path)
    png = io.BytesIO()
    fig.savefig(png, format=target.suffix.lstrip(".") or "png")
    plt.close(fig)
    return storage.as_string(storage.write_bytes_atomic(target, png.getvalue()))
