"""Data-plane benchmarks: ingest throughput, GX validation cost, auto-label quality, active-learning savings."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def ingest_and_validate(url: str, work: Path, batches: int, students: int) -> dict[str, Any]:
    """Rows/s of exactly-once ingest, and GX validation time as a ratio to ingest time for the same batches."""
    from airgate.core import migrations
    from airgate.core.spec import find_spec
    from airgate.core.warehouse import make_engine
    from airgate.data import checks, clean, collect
    from airgate.dev.simulator import SimConfig, Simulator, write_catalog

    os.environ["AIRGATE_HOME"] = str(work)
    spec = find_spec("knowledge_tracing")
    engine = make_engine(url)
    migrations.upgrade(engine)
    sim = Simulator(SimConfig(students_per_batch=students))
    write_catalog(sim, work / "catalog" / "knowledge_tracing_items.csv")
    landing = work / "landing-ingest"
    for b in range(batches):
        sim.write_batch(b, landing, work / "oracle-ingest")
    t0 = time.perf_counter()
    result = collect.ingest(engine, spec, landing)
    ingest_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cleaned = clean.clean_pending(engine, spec)
    clean_s = time.perf_counter() - t0
    import great_expectations  # noqa: F401  - paid once per worker process, not per batch: keep it out of the ratio

    t0 = time.perf_counter()
    outcomes = checks.validate_pending(engine, spec)
    validate_s = time.perf_counter() - t0
    engine.dispose()
    rows = result.rows
    return {
        "rows": rows,
        "batches": batches,
        "ingest_s": round(ingest_s, 3),
        "ingest_rows_per_s": round(rows / ingest_s),
        "clean_rows_per_s": round(rows / clean_s),
        "gx_validate_s": round(validate_s, 3),
        "gx_cost_ratio_to_ingest": round(validate_s / ingest_s, 2),
        "validation_status": sorted({o.status for o in outcomes}),
        "quarantined": sum(v.quarantined for v in cleaned.versions),
    }


def auto_labels(work: Path) -> dict[str, Any]:
    """Auto-label accuracy against the truth graded later, and the share of rows labeled automatically."""
    import pandas as pd
    from sqlalchemy import select

    from airgate.core import migrations, registry
    from airgate.core.spec import find_spec
    from airgate.core.warehouse import labels, make_engine
    from airgate.data import clean, collect, labeling
    from airgate.dev.simulator import SimConfig, Simulator, load_truth, write_catalog
    from airgate.governance import promotion, registration
    from airgate.model import gates, training
    from airgate.serving import autolabel

    os.environ["AIRGATE_HOME"] = str(work)
    spec = find_spec("knowledge_tracing")
    engine = make_engine(f"sqlite:///{work / 'autolabel.db'}")
    migrations.upgrade(engine)
    sim = Simulator(SimConfig(students_per_batch=300, ungraded_rate=0.3))
    write_catalog(sim, work / "catalog" / "knowledge_tracing_items.csv")
    landing, oracle = work / "landing-auto", work / "oracle-auto"
    for b in range(3):
        sim.write_batch(b, landing, oracle, roster_path=work / "catalog" / "knowledge_tracing_students.csv")
    collect.ingest(engine, spec, landing)
    clean.clean_pending(engine, spec)
    first = labeling.label_pending(engine, spec)
    cfg = registry.MlflowConfig.under(work / "mlflow-auto")
    training.train(
        engine,
        training.TrainConfig(
            spec, first.labeled_version_id or "", "tr-auto", "bench", cfg, str(work / "runs")
        ),
    )
    gates.validate(engine, spec, cfg, "tr-auto", str(work / "runs"))
    req = registration.register_and_request(engine, spec, cfg, "tr-auto")
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
    sim.write_batch(3, landing, oracle, roster_path=work / "catalog" / "knowledge_tracing_students.csv")
    collect.ingest(engine, spec, landing)
    clean.clean_pending(engine, spec)
    predictor = autolabel.champion_predictor(engine, spec, cfg)
    out = labeling.label_pending(engine, spec, predictor=predictor)
    with engine.connect() as conn:
        auto = pd.DataFrame(
            conn.execute(
                select(labels.c.event_id, labels.c.label).where(
                    labels.c.version_id == out.labeled_version_id, labels.c.source == "auto"
                )
            ).all(),
            columns=["event_id", "label"],
        )
    truth = load_truth(oracle)
    joined = auto.merge(truth[["event_id", "true_correct"]], on="event_id")
    unlabeled_before = out.summary["unlabeled"] + len(auto)
    # The trade-off behind the spec's threshold: share and accuracy of auto-labels at other thresholds.
    from airgate.data.features import build_features, load_history

    hist = load_history(engine, spec.name)
    feats = build_features(hist).merge(hist[["event_id", "student_id"]], on="event_id")
    with engine.connect() as conn:
        labeled_ids = set(
            conn.execute(
                select(labels.c.event_id).where(
                    labels.c.version_id == out.labeled_version_id, labels.c.source != "auto"
                )
            ).scalars()
        )
    pool = feats[~feats["event_id"].isin(labeled_ids)].merge(
        truth[["event_id", "true_correct"]], on="event_id"
    )
    p = predictor.predict(hist, pool) if predictor is not None else None
    curve = []
    if p is not None:
        import numpy as np

        conf = np.maximum(p, 1 - p)
        for th in (0.7, 0.75, 0.8, 0.85, 0.9):
            take = conf >= th
            acc = (
                float(((p[take] >= 0.5).astype(int) == pool["true_correct"].to_numpy()[take]).mean())
                if take.any()
                else None
            )
            curve.append(
                {
                    "threshold": th,
                    "share_of_unlabeled": round(float(take.mean()), 4),
                    "accuracy": None if acc is None else round(acc, 4),
                }
            )
    return {
        "threshold": spec.label_policy.auto_label_min_confidence,
        "auto_labels": len(auto),
        "curve": curve,
        "auto_label_accuracy": round(float((joined["label"] == joined["true_correct"]).mean()), 4)
        if len(joined)
        else None,
        "auto_share_of_all_labels": round(out.auto_share, 4),
        "auto_share_of_unlabeled": round(len(auto) / max(unlabeled_before, 1), 4),
        "queued_for_review": out.queued,
    }


def active_learning(seed_labels: int = 300, step: int = 300, max_labels: int = 9000) -> dict[str, Any]:
    """Labels needed to reach 98% of the full-pool AUC: uncertainty sampling against random sampling."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from airgate.data.features import FEATURES, build_features
    from airgate.dev.simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(students_per_batch=300))
    events = pd.concat([sim.batch(b).events for b in range(4)], ignore_index=True)
    truth = pd.concat([sim.batch(b).truth for b in range(4)], ignore_index=True)
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    feats = build_features(events).merge(truth[["event_id", "true_correct"]], on="event_id")
    feats = feats.merge(events[["event_id", "ts"]], on="event_id").sort_values("ts").reset_index(drop=True)
    cut = int(len(feats) * 0.8)
    pool, test = feats.iloc[:cut].reset_index(drop=True), feats.iloc[cut:]
    params = {
        "objective": "binary",
        "verbosity": -1,
        "seed": 7,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 2,
        "num_leaves": 15,
        "learning_rate": 0.1,
        "min_child_samples": 20,
    }

    def fit_auc(idx: np.ndarray) -> tuple[float, Any]:
        booster = lgb.train(
            params, lgb.Dataset(pool.loc[idx, FEATURES], pool.loc[idx, "true_correct"]), num_boost_round=60
        )
        return float(roc_auc_score(test["true_correct"], booster.predict(test[FEATURES]))), booster

    full_auc, _ = fit_auc(np.arange(len(pool)))
    target = 0.98 * full_auc
    curves: dict[str, list[tuple[int, float]]] = {}
    needed: dict[str, int | None] = {}
    for strategy in ("uncertainty", "mixed", "random"):
        rng = np.random.default_rng(11)
        chosen = rng.choice(len(pool), size=seed_labels, replace=False)
        curve = []
        reached = None
        while len(chosen) <= max_labels:
            auc, booster = fit_auc(chosen)
            curve.append((len(chosen), round(auc, 4)))
            if reached is None and auc >= target:
                reached = len(chosen)
                break
            rest = np.setdiff1d(np.arange(len(pool)), chosen)
            if strategy == "uncertainty":
                p = booster.predict(pool.loc[rest, FEATURES])
                pick = rest[np.argsort(np.abs(p - 0.5))[:step]]
            elif strategy == "mixed":  # half the most uncertain, half at random (guards against pure noise)
                p = booster.predict(pool.loc[rest, FEATURES])
                unsure = rest[np.argsort(np.abs(p - 0.5))[: step // 2]]
                others = np.setdiff1d(rest, unsure)
                pick = np.concatenate([unsure, rng.choice(others, size=step - len(unsure), replace=False)])
            else:
                pick = rng.choice(rest, size=step, replace=False)
            chosen = np.concatenate([chosen, pick])
        curves[strategy] = curve
        needed[strategy] = reached
    saving = {
        k: round(1 - v / needed["random"], 3)
        for k, v in needed.items()
        if k != "random" and v and needed["random"]
    }
    return {
        "pool_rows": len(pool),
        "full_pool_auc": round(full_auc, 4),
        "target_auc": round(target, 4),
        "labels_needed": needed,
        "label_saving_vs_random": saving,
        "curves": curves,
    }
