"""Drift detection delay in batches, with library calls only (no Airflow): what the score DAG's monitor_drift does.

For each seed, a champion is trained and approved on two batches of cohort A. Then nightly batches arrive, each
collected, cleaned, scored (``scoring.score``: the newest clean version) and checked (``monitoring.check_drift``: its
features and scores against the champion's validation split), as after every scoring run:

* batches 2 .. k-1 are still cohort A: every alarm there is a false alarm;
* from batch k a new cohort arrives (its mean ability shifted by ``shift`` logits); the delay is the number of
  new-cohort batches scored up to and including the first alarm (1: the alarm fires on the cohort's first batch),
  or None when no alarm fired within ``max_new_batches``.

The cohort-A nights are shared by every shift (batch n is a function of the seed and n alone): the warehouse is
copied after them, once per shift. Tuning is cut to a few trials: the champion's last AUC point does not move
the drift check, which compares distributions.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

MODEL = "knowledge_tracing"


def _spec() -> Any:
    """The shipped spec with fewer tuning trials (and DKT epochs)."""
    from airgate.core.spec import find_spec

    shipped = find_spec(MODEL)
    quick = [
        c.model_copy(update={"n_trials": 2, "params": {**c.params, "epochs": 4}}) if c.kind == "dkt" else c
        for c in shipped.candidates
    ]
    return shipped.model_copy(
        update={"tuning": shipped.tuning.model_copy(update={"n_trials": 4}), "candidates": quick}
    )


def _night(
    engine: Any, spec: Any, cfg: Any, sim: Any, batch: int, work: Path, landing: Path
) -> dict[str, Any]:
    """Batch ``batch`` lands, is collected and cleaned, scored, and its drift checked."""
    from airgate.data import clean, collect
    from airgate.serving import monitoring, scoring

    sim.write_batch(batch, landing, work / "oracle", roster_path=work / "catalog" / f"{MODEL}_students.csv")
    collect.ingest(engine, spec, landing)
    clean.clean_pending(engine, spec)
    run_id = f"sr-{landing.name}-{batch:03d}"
    runs = str(work / "runs")
    night = f"{sim.config.start + timedelta(days=batch):%Y-%m-%d}"  # the batch's own day
    scoring.score(engine, scoring.ScoreConfig(spec, cfg, night, run_id, runs))
    v = monitoring.check_drift(engine, spec, cfg, run_id, runs)
    return {
        "batch": batch,
        "cohort": sim.cohort_of(batch),
        "status": v.status,
        "drift_share": round(v.value, 3) if v.value is not None else None,
        "drifted": list(v.summary.get("drifted") or []),
    }


def _seed(
    seed: int, work: Path, shifts: tuple[float, ...], arrival: int, max_new: int, students: int, events: int
) -> dict[str, Any]:
    from airgate.core import migrations, registry
    from airgate.core.warehouse import make_engine
    from airgate.data import clean, collect, labeling
    from airgate.dev.simulator import SimConfig, Simulator, write_catalog
    from airgate.governance import promotion, registration
    from airgate.model import gates, training

    os.environ["AIRGATE_HOME"] = str(work)
    spec = _spec()
    db = work / "warehouse.db"
    engine = make_engine(f"sqlite:///{db}")
    migrations.upgrade(engine)
    cfg = registry.MlflowConfig.under(work / "mlflow")
    base = SimConfig(seed=seed, students_per_batch=students, events_per_student=events)
    sim_a = Simulator(base)
    write_catalog(sim_a, work / "catalog" / f"{MODEL}_items.csv")
    landing = work / "landing-a"
    for b in range(2):
        sim_a.write_batch(b, landing, work / "oracle", roster_path=work / "catalog" / f"{MODEL}_students.csv")
    collect.ingest(engine, spec, landing)
    clean.clean_pending(engine, spec)
    labeled = labeling.label_pending(engine, spec).labeled_version_id or ""
    t0 = time.perf_counter()
    training.train(
        engine, training.TrainConfig(spec, labeled, f"tr-{seed}", "bench", cfg, str(work / "runs"))
    )
    report = gates.validate(engine, spec, cfg, f"tr-{seed}", str(work / "runs"))
    if not report.approvable:
        raise RuntimeError(f"seed {seed}: the cohort-A champion failed its gates: {report.failures}")
    req = registration.register_and_request(engine, spec, cfg, f"tr-{seed}")
    r = promotion.get_request(engine, req["approval_request_id"])
    promotion.decide(
        engine,
        spec,
        r["id"],
        promotion.Actor("bench-approver", frozenset({"admin"})),
        "approve",
        "bench",
        r["evidence_hash"],
        lambda m, v: registry.set_alias(cfg, m, v),
    )
    train_s = time.perf_counter() - t0

    before = [_night(engine, spec, cfg, sim_a, b, work, landing) for b in range(2, arrival)]
    engine.dispose()
    out: dict[str, Any] = {
        "seed": seed,
        "train_seconds": round(train_s, 1),
        "cohort_a_nights": before,
        "false_alarms": sum(n["status"] == "alarm" for n in before),
        "by_shift": {},
    }
    for shift in shifts:
        db_s = work / f"warehouse{shift:+.2f}.db"
        shutil.copy(db, db_s)  # the same cohort-A history and champion for every shift
        eng = make_engine(f"sqlite:///{db_s}")
        sim_b = Simulator(dataclasses.replace(base, new_cohort_from_batch=arrival, cohort_shift=shift))
        nights = []
        for b in range(arrival, arrival + max_new):
            nights.append(_night(eng, spec, cfg, sim_b, b, work, work / f"landing{shift:+.2f}"))
            if nights[-1]["status"] == "alarm":
                break
        eng.dispose()
        alarm = next((i + 1 for i, n in enumerate(nights) if n["status"] == "alarm"), None)
        out["by_shift"][f"{shift:+.2f}"] = {"delay_batches": alarm, "nights": nights}
    return out


def run(
    seeds: tuple[int, ...] = (1, 2, 3),
    shifts: tuple[float, ...] = (-1.0, -0.5, -0.25),
    arrival: int = 6,
    max_new_batches: int = 3,
    students_per_batch: int = 200,
    events_per_student: int = 50,
) -> dict[str, Any]:
    """Drift detection delay (batches from the new cohort's arrival to the first alarm) and false alarms on the
    cohort-A batches before it, per seed and cohort shift."""
    t0 = time.perf_counter()
    home = os.environ.get("AIRGATE_HOME")
    per_seed = []
    try:
        for seed in seeds:
            work = Path(tempfile.mkdtemp(prefix=f"airgate-drift-{seed}-"))
            try:
                per_seed.append(
                    _seed(
                        seed, work, shifts, arrival, max_new_batches, students_per_batch, events_per_student
                    )
                )
            finally:
                shutil.rmtree(work, ignore_errors=True)
            s = per_seed[-1]
            print(
                f"  seed {seed}: false alarms {s['false_alarms']}/{len(s['cohort_a_nights'])}, delay by shift "
                f"{ {k: v['delay_batches'] for k, v in s['by_shift'].items()} }"
            )
    finally:
        if home is None:
            os.environ.pop("AIRGATE_HOME", None)
        else:
            os.environ["AIRGATE_HOME"] = home
    by_shift: dict[str, Any] = {}
    for shift in shifts:
        key = f"{shift:+.2f}"
        delays = [s["by_shift"][key]["delay_batches"] for s in per_seed]
        found = [d for d in delays if d is not None]
        shares = [n["drift_share"] for s in per_seed for n in s["by_shift"][key]["nights"]]
        by_shift[key] = {
            "delay_batches": delays,
            "detected": f"{len(found)}/{len(delays)}",
            "median_delay_batches": statistics.median(found) if found else None,
            "new_cohort_drift_shares": shares,
        }
    a_nights = [n for s in per_seed for n in s["cohort_a_nights"]]
    return {
        "setup": {
            "seeds": list(seeds),
            "students_per_batch": students_per_batch,
            "events_per_student": events_per_student,
            "champion_batches": [0, 1],
            "cohort_a_batches_checked": list(range(2, arrival)),
            "new_cohort_from_batch": arrival,
            "max_new_batches": max_new_batches,
            "max_drift_share": _spec().monitoring.max_drift_share,
        },
        "by_shift": by_shift,
        "false_alarms": sum(s["false_alarms"] for s in per_seed),
        "cohort_a_checks": len(a_nights),
        "cohort_a_drift_shares": [n["drift_share"] for n in a_nights],
        # how often each column drifted on cohort-A nights: what stands between a quiet night and a false alarm
        "cohort_a_drifted_columns": dict(Counter(c for n in a_nights for c in n["drifted"]).most_common()),
        "per_seed": per_seed,
        "seconds": round(time.perf_counter() - t0, 1),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(seeds=(1,), shifts=(-1.0,)), indent=1))  # a quick look; make bench runs the full one
