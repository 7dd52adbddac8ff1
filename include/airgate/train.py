"""Training: the spec's candidates on one labeled version, split by time, every run logged to MLflow.

The test split is scored once, here, after the model is fixed on train and valid. Everything is seeded and
single-process deterministic, so retraining the same data version gives the same metrics. A training run id is
idempotent: a retried task finds its finished run and returns it instead of training twice.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate import audit, datasets, registry
from airgate.features import FEATURES, build_features, load_history
from airgate.spec import ModelSpec
from airgate.warehouse import labels, model_candidates, utcnow

log = logging.getLogger(__name__)
SEED = 42


@dataclass(frozen=True)
class TrainConfig:
    spec: ModelSpec
    labeled_version_id: str
    training_run_id: str
    trained_by: str
    mlflow: registry.MlflowConfig
    runs_dir: str
    code_version: str = "unknown"


@dataclass
class TrainResult:
    training_run_id: str
    model: str
    data_version: str
    trained_by: str
    chosen: str
    mlflow_run_id: str
    model_uri: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    test_predictions: str = ""
    rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_frame(engine: Engine, spec: ModelSpec, labeled_version_id: str) -> pd.DataFrame:
    """Features for every labeled row of the version, computed from its full point-in-time history."""
    v = datasets.get(engine, labeled_version_id)
    if v is None or v.kind != "labeled":
        raise ValueError(f"{labeled_version_id} is not a labeled dataset version of {spec.name}")
    history = load_history(engine, spec.name, list(v.summary["clean_versions"]))
    feats = build_features(history)
    with engine.connect() as conn:
        lab = pd.DataFrame(conn.execute(select(labels.c.event_id, labels.c.label, labels.c.source)
                                        .where(labels.c.version_id == labeled_version_id)).all(),
                           columns=["event_id", "label", "source"])
    meta = history[["event_id", "student_id", "item_id", "ts"]]
    return feats.merge(lab, on="event_id").merge(meta, on="event_id").sort_values(["ts", "event_id"],
                                                                                   kind="mergesort")


def time_split(df: pd.DataFrame, spec: ModelSpec) -> dict[str, pd.DataFrame]:
    """Train on every label; validate and test only on labels no model made (auto-labels would grade
    the model on its own homework)."""
    from airgate.label import TRUSTED_SOURCES

    # Grouped by student and ordered by time: students are ranked by their first answer and each student's rows
    # all land in one split, so no student is both learned from and tested on, and later students are the test.
    first = df.groupby("student_id")["ts"].min().sort_values(kind="mergesort")
    rows_per = df.groupby("student_id").size().reindex(first.index).cumsum()
    n = len(df)
    in_train = set(rows_per.index[rows_per <= n * spec.splits.train])
    in_valid = set(rows_per.index[(rows_per > n * spec.splits.train)
                                  & (rows_per <= n * (spec.splits.train + spec.splits.valid))])
    part = df["student_id"].map(lambda s: "train" if s in in_train else "valid" if s in in_valid else "test")
    trusted = df["source"].isin(TRUSTED_SOURCES) if "source" in df.columns else pd.Series(True, index=df.index)
    return {"train": df[part == "train"], "valid": df[(part == "valid") & trusted],
            "test": df[(part == "test") & trusted]}


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    p = np.clip(p, 1e-6, 1 - 1e-6)
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).mean() for b in range(10) if (bins == b).any())
    return {"auc": float(roc_auc_score(y, p)), "logloss": float(log_loss(y, p)),
            "brier": float(brier_score_loss(y, p)), "ece": float(ece)}


def scoring_latency_ms_per_1k(predict: Any, frame: pd.DataFrame, repeats: int = 30) -> float:
    """p95 wall time to score 1,000 rows through the same predict call scoring uses."""
    chunk = frame[FEATURES].iloc[:1000]
    if len(chunk) < 1000:
        chunk = pd.concat([chunk] * (1000 // max(len(chunk), 1) + 1)).iloc[:1000]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(chunk)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 95))


def lgbm_params(spec_params: dict[str, Any]) -> dict[str, Any]:
    p = dict(spec_params)
    rounds = int(p.pop("n_estimators", 300))
    # Early stopping watches log-loss, not AUC: AUC is rank-only and peaks after a handful of trees, leaving
    # probabilities squeezed around the base rate (fine ranking, useless for calibration and auto-labels).
    base = {"objective": "binary", "metric": ["binary_logloss", "auc"], "first_metric_only": True, "verbosity": -1,
            "seed": SEED, "deterministic": True, "force_row_wise": True, "num_threads": 2}
    base.update(p)
    base["num_boost_round"] = rounds
    return base


def existing(engine: Engine, training_run_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        r = conn.execute(select(model_candidates).where(model_candidates.c.training_run_id == training_run_id)).first()
    return dict(r._mapping) if r else None


def train(engine: Engine, cfg: TrainConfig) -> TrainResult:
    import lightgbm as lgb
    import mlflow
    from mlflow.models import infer_signature

    spec = cfg.spec
    done = existing(engine, cfg.training_run_id)
    if done is not None:
        log.info("training run %s already finished; returning it", cfg.training_run_id)
        m = done["metrics"]
        return TrainResult(cfg.training_run_id, spec.name, done["data_version"], done["trained_by"], m["chosen"],
                           done["mlflow_run_id"], m["model_uri"], m["candidates"], m["test_predictions"], m["rows"])

    df = training_frame(engine, spec, cfg.labeled_version_id)
    parts = time_split(df, spec)
    if min(len(p) for p in parts.values()) < 50 or parts["train"]["label"].nunique() < 2:
        raise ValueError(f"labeled version {cfg.labeled_version_id} has too few rows to train ({len(df)})")
    rows = {k: len(v) for k, v in parts.items()}
    exp_id = registry.experiment_id(cfg.mlflow, spec.name)
    registry.client(cfg.mlflow)
    tags = {"airgate.model": spec.name, "airgate.data_version": cfg.labeled_version_id,
            "airgate.training_run_id": cfg.training_run_id, "airgate.spec_hash": spec.spec_hash,
            "airgate.code_version": cfg.code_version, "airgate.trained_by": cfg.trained_by}
    results: dict[str, dict[str, float]] = {}
    test_pred = pd.DataFrame({"event_id": parts["test"]["event_id"].to_numpy(),
                              "label": parts["test"]["label"].to_numpy()})
    chosen_uri, chosen_run, chosen = "", "", ""
    for cand in spec.candidates:
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{cfg.training_run_id}:{cand.name}", tags=tags) as run:
            mlflow.log_params({"candidate": cand.name, "kind": cand.kind, **cand.params})
            mlflow.log_params({f"rows_{k}": v for k, v in rows.items()})
            if cand.kind == "baseline":
                # Per-item historical accuracy, point in time: what a teacher's gradebook would say.
                valid_p = parts["valid"]["item_rate"].to_numpy()
                test_p = parts["test"]["item_rate"].to_numpy()
                latency = scoring_latency_ms_per_1k(lambda x: x["item_rate"].to_numpy(), parts["test"])
            else:
                params = lgbm_params(cand.params)
                rounds = params.pop("num_boost_round")
                dtrain = lgb.Dataset(parts["train"][FEATURES], parts["train"]["label"], free_raw_data=False)
                dvalid = lgb.Dataset(parts["valid"][FEATURES], parts["valid"]["label"], reference=dtrain)
                booster = lgb.train(params, dtrain, num_boost_round=rounds, valid_sets=[dvalid],
                                    callbacks=[lgb.early_stopping(30, first_metric_only=True, verbose=False)])
                valid_p = booster.predict(parts["valid"][FEATURES], num_iteration=booster.best_iteration)
                test_p = booster.predict(parts["test"][FEATURES], num_iteration=booster.best_iteration)
                # Reproducibility is a gate: train again from scratch on the same version and compare.
                again = lgb.train(params, lgb.Dataset(parts["train"][FEATURES], parts["train"]["label"]),
                                  num_boost_round=rounds, valid_sets=[lgb.Dataset(
                                      parts["valid"][FEATURES], parts["valid"]["label"])],
                                  callbacks=[lgb.early_stopping(30, first_metric_only=True, verbose=False)])
                again_p = np.asarray(again.predict(parts["test"][FEATURES], num_iteration=again.best_iteration))
                repro_diff = float(np.max(np.abs(again_p - np.asarray(test_p))))
                latency = scoring_latency_ms_per_1k(booster.predict, parts["test"])
                mlflow.log_param("best_iteration", booster.best_iteration)
                example = parts["train"][FEATURES].head(5)
                info = mlflow.lightgbm.log_model(
                    booster, name="model", signature=infer_signature(example, booster.predict(example)),
                    input_example=example, pip_requirements=[f"lightgbm=={lgb.__version__}"])
                chosen_uri, chosen_run, chosen = info.model_uri, run.info.run_id, cand.name
            m = {f"valid_{k}": v for k, v in metrics(parts["valid"]["label"].to_numpy(), valid_p).items()}
            m.update({f"test_{k}": v for k, v in metrics(parts["test"]["label"].to_numpy(), test_p).items()})
            m["p95_latency_ms_per_1k"] = latency
            if cand.kind != "baseline":
                m["repro_max_abs_diff"] = repro_diff
            mlflow.log_metrics(m)
            results[cand.name] = m
            test_pred[f"p_{cand.name}"] = test_p

    out_dir = Path(cfg.runs_dir) / cfg.training_run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    pred_path = out_dir / "test_predictions.csv"
    test_pred.to_csv(pred_path, index=False)
    mlflow.log_artifact(str(pred_path), run_id=chosen_run)
    result = TrainResult(cfg.training_run_id, spec.name, cfg.labeled_version_id, cfg.trained_by, chosen,
                         chosen_run, chosen_uri, results, str(pred_path), rows)
    with engine.begin() as conn:
        conn.execute(model_candidates.insert().values(
            model=spec.name, training_run_id=cfg.training_run_id, data_version=cfg.labeled_version_id,
            mlflow_run_id=chosen_run, trained_by=cfg.trained_by, status="trained", created_at=utcnow(),
            code_version=cfg.code_version[:64],
            metrics={"candidates": results, "chosen": chosen, "model_uri": chosen_uri,
                     "test_predictions": str(pred_path), "rows": rows, "code_version": cfg.code_version}))
        audit.append(conn, actor=cfg.trained_by, event_type="train", model=spec.name,
                     entity={"training_run_id": cfg.training_run_id, "data_version": cfg.labeled_version_id,
                             "mlflow_run_id": chosen_run},
                     details={"chosen": chosen, "metrics": results, "rows": rows})
    log.info("training run %s: %s", cfg.training_run_id, json.dumps(results, indent=None))
    return result
