"""Training in three steps, so candidates can train in parallel (one mapped task or pod each):

1. ``prepare`` splits one labeled version by time, grouped by student, and writes the splits once per training run.
2. ``train_candidate`` tunes one candidate with Optuna on train and validation only, logs every trial and the
   final model to MLflow, and checks that retraining its chosen configuration reproduces it.
3. ``finalize`` applies the spec's selection rule to every candidate's points, then reads the test split, once,
   to evaluate the chosen model, the baseline and the current champion on the same rows. The read is recorded in
   the warehouse; a second read for the same run with a different model is refused.

Everything is seeded and deterministic. Each step is idempotent per training run id: a retry returns the finished
result (or resumes the Optuna study) instead of training twice.

The run's files (``runs/<training run>/``: the split, each candidate's result, the Pareto front and plot, the test
predictions) are in storage (``airgate.core.storage``, ``AIRGATE_STORAGE_URL``): the tasks that write and read them may
run on different hosts.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from airgate.core import audit, datasets, registry, storage
from airgate.core.spec import Candidate, ModelSpec
from airgate.core.warehouse import labels, model_candidates, test_set_reads, utcnow
from airgate.data import feature_store
from airgate.data.features import FEATURES, build_features, load_history
from airgate.model import predictors, tuning

log = logging.getLogger(__name__)
SEED = 42


@dataclass(frozen=True)
class TrainConfig:
    spec: ModelSpec
    labeled_version_id: str
    training_run_id: str
    trained_by: str
    mlflow: registry.MlflowConfig
    runs_dir: storage.Location  # runtime.runs_dir() in the DAG: runs/ under AIRGATE_STORAGE_URL
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
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    test_predictions: str = ""
    rows: dict[str, int] = field(default_factory=dict)
    pareto: dict[str, Any] = field(default_factory=dict)

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
    from airgate.data.labeling import TRUSTED_SOURCES

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


# ----------------------------------------------------------------------------------------------------- splits

SPLIT_COLUMNS = ["event_id", "student_id", "item_id", "ts", "label", "source", *FEATURES]


class TestSetAlreadyRead(RuntimeError):
    """The test split of this training run was already read for another model: a second look is refused."""


def run_dir(cfg: TrainConfig) -> storage.StoragePath:
    return storage.location(cfg.runs_dir) / cfg.training_run_id


def _manifest(split: storage.StoragePath) -> dict[str, Any]:
    return dict(json.loads(storage.read_text(split / "manifest.json", what="a training split's manifest")))


def prepare(engine: Engine, cfg: TrainConfig) -> dict[str, Any]:
    """Split the labeled version once per training run; later calls (retries, other workers) get the same split.

    An object store has no atomic folder rename, so the manifest is the commit: each file is written whole, the
    manifest last, and a split is there once its manifest is. A racing worker writes the same bytes (the split is
    seeded; Parquet of the same frame is the same file) and then finds the manifest; anything else would fail the
    manifest's SHA-256 check when the test split is read.
    """
    out = run_dir(cfg) / "split"
    manifest = out / "manifest.json"
    if storage.exists(manifest):
        return _manifest(out)
    spec = cfg.spec
    df = training_frame(engine, spec, cfg.labeled_version_id)
    parts = time_split(df, spec)
    if min(len(p) for p in parts.values()) < 50 or parts["train"]["label"].nunique() < 2:
        raise ValueError(f"labeled version {cfg.labeled_version_id} has too few rows to train ({len(df)})")
    hashes = {}
    for name, part in parts.items():
        buf = io.BytesIO()
        part[SPLIT_COLUMNS].to_parquet(buf, index=False)
        storage.write_bytes_atomic(out / f"{name}.parquet", buf.getvalue())
        hashes[name] = hashlib.sha256(buf.getvalue()).hexdigest()
    body = {"model": spec.name, "training_run_id": cfg.training_run_id, "labeled_version_id": cfg.labeled_version_id,
            "trained_by": cfg.trained_by, "code_version": cfg.code_version, "spec_hash": spec.spec_hash,
            "rows": {k: len(v) for k, v in parts.items()},
            "students": {k: int(v["student_id"].nunique()) for k, v in parts.items()}, "sha256": hashes,
            "split_hash": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()}
    if storage.exists(manifest):  # another worker finished first; theirs is the split
        return _manifest(out)
    storage.write_text_atomic(manifest, json.dumps(body, indent=2))
    tuning.init_storage(engine.url.render_as_string(hide_password=False))
    audit.record(engine, actor=cfg.trained_by, event_type="train_split", model=spec.name,
                 entity={"training_run_id": cfg.training_run_id, "data_version": cfg.labeled_version_id},
                 details={"rows": body["rows"], "students": body["students"], "split_hash": body["split_hash"]})
    return body


def load_split(cfg: TrainConfig, part: str) -> pd.DataFrame:
    """Train or validation rows. The test split is not served here: only ``read_test_once`` opens it."""
    if part not in ("train", "valid"):
        raise ValueError(f"load_split serves 'train' and 'valid' only, not {part!r}: the test split is read once "
                         "by finalize()")
    return feature_store.read_parquet(run_dir(cfg) / "split" / f"{part}.parquet", what=f"the {part} split")


def read_test_once(engine: Engine, cfg: TrainConfig, model_uri: str) -> pd.DataFrame:
    """The one read of the test split, recorded with the model it evaluates.

    A retry of the same evaluation (same model) may read again, since the choice was fixed before the first read;
    any other model is refused, so no one can pick among models by looking at the test set.
    """
    manifest = _manifest(run_dir(cfg) / "split")
    # Read once, into memory: the bytes checked are the bytes evaluated.
    data = storage.read_bytes(run_dir(cfg) / "split" / "test.parquet", what="the test split")
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]["test"]:
        raise TestSetAlreadyRead(f"the test split of {cfg.training_run_id} changed on disk since it was written")
    reader = f"{cfg.trained_by}:{model_uri}"[:128]
    try:
        with engine.begin() as conn:
            conn.execute(test_set_reads.insert().values(
                training_run_id=cfg.training_run_id, model=cfg.spec.name, split_hash=manifest["split_hash"],
                rows=manifest["rows"]["test"], reader=reader, read_at=utcnow()))
    except IntegrityError:
        with engine.connect() as conn:
            first = conn.execute(select(test_set_reads.c.reader)
                                 .where(test_set_reads.c.training_run_id == cfg.training_run_id)).scalar_one()
        if first != reader:
            raise TestSetAlreadyRead(
                f"the test split of {cfg.training_run_id} was already read to evaluate {first}; "
                f"refusing a second read for {reader}. Start a new training run instead.") from None
    return pd.read_parquet(io.BytesIO(data))


def test_reads(engine: Engine, training_run_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(test_set_reads).where(test_set_reads.c.training_run_id == training_run_id))]


# ------------------------------------------------------------------------------------------------- candidates

def _history(engine: Engine, cfg: TrainConfig) -> pd.DataFrame:
    v = datasets.get(engine, cfg.labeled_version_id)
    assert v is not None
    return load_history(engine, cfg.spec.name, list(v.summary["clean_versions"]))


class Fitter:
    """Fits one candidate kind with given parameters and returns (predictor, valid predictions)."""

    def __init__(self, engine: Engine, cfg: TrainConfig, cand: Candidate) -> None:
        self.cand = cand
        self.train = load_split(cfg, "train")
        self.valid = load_split(cfg, "valid")
        self.history = _history(engine, cfg) if cand.kind == "dkt" else self.valid[["event_id", "student_id"]]

    def fit(self, params: dict[str, Any]) -> tuple[predictors.Predictor, np.ndarray, dict[str, Any]]:
        if self.cand.kind == "baseline":
            pred: predictors.Predictor = predictors.BaselinePredictor()
            info: dict[str, Any] = {}
        elif self.cand.kind == "lightgbm":
            import lightgbm as lgb

            p = lgbm_params(params)
            # Small data trains faster on one thread, and OpenMP on a busy two-core worker can stall badly.
            p["num_threads"] = 1 if len(self.train) < 100_000 else p["num_threads"]
            rounds = p.pop("num_boost_round")
            dtrain = lgb.Dataset(self.train[FEATURES], self.train["label"], free_raw_data=False)
            dvalid = lgb.Dataset(self.valid[FEATURES], self.valid["label"], reference=dtrain)
            booster = lgb.train(p, dtrain, num_boost_round=rounds, valid_sets=[dvalid],
                                callbacks=[lgb.early_stopping(30, first_metric_only=True, verbose=False)])
            # Keep only the trees early stopping chose, so the logged model is exactly the evaluated one.
            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
            pred = predictors.LightGBMPredictor(booster)
            info = {"best_iteration": booster.current_iteration()}
        else:
            from airgate.model import dkt

            targets = pd.concat([self.train[["event_id", "label"]], self.valid[["event_id", "label"]]])
            model = dkt.fit(self.history, targets, set(self.train["student_id"]), set(self.valid["student_id"]),
                            dkt.DKTParams.from_dict(params))
            pred = predictors.DKTPredictor(model)
            info = {"best_epoch": model.best_epoch}
        return pred, pred.predict(self.history, self.valid), info

    def measure(self, pred: predictors.Predictor, valid_p: np.ndarray) -> dict[str, float]:
        m = metrics(self.valid["label"].to_numpy(), valid_p)
        m["p95_latency_ms_per_1k"] = predictors.latency_ms_per_1k(pred, self.history, self.valid)
        m["model_size_kb"] = pred.size_kb
        return m


def result_path(cfg: TrainConfig, name: str) -> str:
    """Where a candidate's full result (every trial) is, spelled as ``storage.as_string`` (a plain path on a
    local root, a URI otherwise); ``load_result`` reads it."""
    return storage.as_string(run_dir(cfg) / "candidates" / f"{name}.json")


def load_result(cfg: TrainConfig, name: str) -> dict[str, Any]:
    """A finished candidate's result, as ``train_candidate`` wrote it (for the task that selects and tests)."""
    return dict(json.loads(storage.read_text(result_path(cfg, name), what=f"the result of candidate {name}")))


def train_candidate(engine: Engine, cfg: TrainConfig, name: str) -> dict[str, Any]:
    """Tune, fit and log one candidate on train + validation. Idempotent: a finished candidate is returned as is."""
    import mlflow

    done = result_path(cfg, name)
    if storage.exists(done):
        return load_result(cfg, name)
    spec = cfg.spec
    cand = next((c for c in spec.candidates if c.name == name), None)
    if cand is None:
        raise ValueError(f"{name!r} is not a candidate of {spec.name}: {[c.name for c in spec.candidates]}")
    manifest = prepare(engine, cfg)
    t0 = time.perf_counter()
    fitter = Fitter(engine, cfg, cand)
    exp_id = registry.experiment_id(cfg.mlflow, spec.name)
    registry.client(cfg.mlflow)
    tags = {"airgate.model": spec.name, "airgate.data_version": cfg.labeled_version_id,
            "airgate.label_version": cfg.labeled_version_id, "airgate.training_run_id": cfg.training_run_id,
            "airgate.spec_hash": spec.spec_hash, "airgate.code_version": cfg.code_version,
            "airgate.trained_by": cfg.trained_by, "airgate.split_hash": manifest["split_hash"],
            "airgate.candidate": name, predictors.KIND_TAG: cand.kind}
    valid_preds: dict[int, np.ndarray] = {}
    last: dict[str, Any] = {}  # the latest trial's validation predictions and fit info, for on_trial
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{cfg.training_run_id}:{name}", tags=tags) as run:
        mlflow.log_params({f"rows_{k}": v for k, v in manifest["rows"].items()})

        def evaluate(params: dict[str, Any]) -> dict[str, float]:
            pred, valid_p, info = fitter.fit(params)
            m = fitter.measure(pred, valid_p)
            last.update(valid_p=valid_p, info=info)
            return m

        def on_trial(number: int, params: dict[str, Any], m: dict[str, float]) -> None:
            valid_preds[number] = last["valid_p"]
            with mlflow.start_run(experiment_id=exp_id, run_name=f"trial-{number}", nested=True,
                                  tags={**tags, "airgate.trial": str(number)}):
                mlflow.log_params({**params, **last["info"]})
                mlflow.log_metrics({f"valid_{k}": v for k, v in m.items()})

        study_db = engine.url.render_as_string(hide_password=False)
        points = tuning.run_study(spec, cand, study_db, f"{cfg.training_run_id}:{name}", evaluate, on_trial=on_trial)
        # With no feasible trial the candidate still reports its best point, marked infeasible: finalize skips it.
        best = tuning.select(points, spec, among=None if any(p.feasible for p in points) else "all")
        # Reproducibility: fit the chosen configuration again from scratch and compare with its trial.
        pred, valid_p, info = fitter.fit(best.params)
        if best.trial in valid_preds:
            reference = valid_preds[best.trial]
        else:  # resumed study: the trial's predictions died with the earlier process; fit a second time
            reference = fitter.fit(best.params)[1]
        repro = float(np.max(np.abs(np.asarray(valid_p) - np.asarray(reference)))) if len(valid_p) else 0.0
        final = fitter.measure(pred, valid_p)
        mlflow.log_params({k: v for k, v in best.params.items()})
        mlflow.log_params({"chosen_trial": best.trial, "n_trials": len(points), **info})
        mlflow.log_metrics({f"valid_{k}": v for k, v in final.items()} | {"repro_max_abs_diff": repro})
        model_uri = _log_model(pred, fitter.train, fitter.history)
        seconds = time.perf_counter() - t0
        mlflow.log_metric("train_seconds", seconds)
        result = {"candidate": name, "kind": cand.kind, "mlflow_run_id": run.info.run_id, "model_uri": model_uri,
                  "params": best.params, "chosen_trial": best.trial, "n_trials": len(points),
                  "feasible": best.feasible, "valid": final, "repro_max_abs_diff": repro,
                  "train_seconds": seconds, "points": [p.to_dict() for p in points]}
    audit.record(engine, actor=cfg.trained_by, event_type="tune", model=spec.name,
                 entity={"training_run_id": cfg.training_run_id, "candidate": name,
                         "mlflow_run_id": result["mlflow_run_id"]},
                 details={"n_trials": len(points), "front": sum(p.on_front for p in points),
                          "chosen_trial": best.trial, "valid_auc": final["auc"], "feasible": best.feasible})
    storage.write_text_atomic(done, json.dumps(result, default=float))
    log.info("candidate %s of %s: valid auc %.4f after %d trials (%.1fs)", name, cfg.training_run_id, final["auc"],
             len(points), seconds)
    return result


def _log_model(pred: predictors.Predictor, train: pd.DataFrame, history: pd.DataFrame) -> str:
    """Log the final model with its signature, an input example and its requirements; '' for the baseline."""
    import mlflow
    from mlflow.models import infer_signature

    if isinstance(pred, predictors.LightGBMPredictor):
        import lightgbm as lgb

        example = train[FEATURES].head(5)
        info = mlflow.lightgbm.log_model(
            pred.booster, name="model", signature=infer_signature(example, pred.booster.predict(example)),
            input_example=example, pip_requirements=[f"lightgbm=={lgb.__version__}", f"pandas=={pd.__version__}"])
        return str(info.model_uri)
    if isinstance(pred, predictors.DKTPredictor):
        from airgate.model import dkt

        example = history[history["student_id"] == history["student_id"].iloc[0]].head(20)
        return str(dkt.log_model(pred.model, "model", example).model_uri)
    return ""


def train_candidate_from_env(model: str, training_run_id: str, candidate: str) -> dict[str, Any]:
    """Entry point for a pod: everything but the ids comes from the environment and the run's split manifest."""
    from airgate.core.settings import code_version, mlflow_config, runs_dir, warehouse_engine
    from airgate.core.spec import find_spec

    spec = find_spec(model)
    manifest = _manifest(storage.location(runs_dir()) / training_run_id / "split")
    cfg = TrainConfig(spec, manifest["labeled_version_id"], training_run_id, manifest["trained_by"], mlflow_config(),
                      runs_dir(), manifest.get("code_version") or code_version())
    return train_candidate(warehouse_engine(), cfg, candidate)


# --------------------------------------------------------------------------------------------------- finalize

def existing(engine: Engine, training_run_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        r = conn.execute(select(model_candidates).where(model_candidates.c.training_run_id == training_run_id)).first()
    return dict(r._mapping) if r else None


def already_trained(engine: Engine, spec: ModelSpec, labeled_version_id: str, code_version: str) -> dict[str, Any] | None:
    """The newest training run on this labeled version with this spec and code, if any.

    Splits, samplers and fits are seeded (the reproducibility gate checks the fit), so the same data, spec and code
    give the same model again, up to a search steered by measured latency: a retraining trigger that finds such a
    run has nothing new to learn from, and a second approval request for it would only cost approvers time.
    """
    with engine.connect() as conn:
        rows = conn.execute(select(model_candidates).where(
            model_candidates.c.model == spec.name, model_candidates.c.data_version == labeled_version_id,
            model_candidates.c.code_version == code_version[:64]).order_by(model_candidates.c.id.desc())).all()
    for r in rows:
        if (r.metrics or {}).get("spec_hash") == spec.spec_hash:
            return dict(r._mapping)
    return None


def _from_row(row: dict[str, Any]) -> TrainResult:
    m = row["metrics"]
    return TrainResult(row["training_run_id"], row["model"], row["data_version"], row["trained_by"], m["chosen"],
                       row["mlflow_run_id"], m["model_uri"], m["candidates"], m["test_predictions"], m["rows"],
                       m.get("pareto", {}))


def finalize(engine: Engine, cfg: TrainConfig, results: list[dict[str, Any]]) -> TrainResult:
    """Select by the spec's rule, then evaluate the chosen model, the baseline and the champion on the test split."""
    import mlflow

    from airgate.governance import promotion

    done = existing(engine, cfg.training_run_id)
    if done is not None:
        log.info("training run %s already finished; returning it", cfg.training_run_id)
        return _from_row(done)
    spec = cfg.spec
    manifest = prepare(engine, cfg)
    by_name = {r["candidate"]: r for r in results}
    missing = [c.name for c in spec.candidates if c.name not in by_name]
    if missing:
        raise ValueError(f"candidates {missing} have no result for {cfg.training_run_id}")
    baseline = next(c.name for c in spec.candidates if c.kind == "baseline")
    points = [tuning.Point.from_dict(p) for r in results for p in r["points"]]
    reps = [tuning.Point(r["candidate"], r["chosen_trial"], r["params"], r["valid"], r["feasible"])
            for r in results if r["candidate"] != baseline]
    chosen_point = tuning.select(reps, spec)  # raises NoFeasiblePoint: nothing may be chosen
    chosen = by_name[chosen_point.candidate]
    overall = {(p.candidate, p.trial) for p in tuning.front(points, spec)}
    out = run_dir(cfg)
    pareto = {"size": len(overall), "trials": len(points), "objectives": [o.model_dump() for o in spec.objectives],
              "chosen": {"candidate": chosen["candidate"], "trial": chosen["chosen_trial"],
                         "params": chosen["params"], "valid": chosen["valid"]},
              "points": [dict(p.to_dict(), on_front=(p.candidate, p.trial) in overall) for p in points]}
    pareto_path = storage.write_text_atomic(out / "pareto.json", json.dumps(pareto, indent=1, default=float))
    star = next((p for p in points if (p.candidate, p.trial) == (chosen["candidate"], chosen["chosen_trial"])),
                None)  # the trial as it was measured, so the star sits on its own point
    plot = tuning.plot_front(points, spec, star, out / "pareto.png")
    pareto_file = storage.as_string(pareto_path)
    pareto["path"], pareto["plot"] = pareto_file, plot

    # The one read of the test split.
    test = read_test_once(engine, cfg, chosen["model_uri"])
    kinds = {chosen["kind"]}
    champ = promotion.current_champion(engine, spec.name)
    champ_pred = predictors.load_version(cfg.mlflow, spec.name, champ.version) if champ else None
    if champ_pred is not None:
        kinds.add(champ_pred.kind)
    history = _history(engine, cfg) if "dkt" in kinds else test[["event_id", "student_id"]]
    y = test["label"].to_numpy()
    test_pred = pd.DataFrame({"event_id": test["event_id"].to_numpy(), "student_id": test["student_id"].to_numpy(),
                              "label": y})
    candidates: dict[str, dict[str, Any]] = {}
    for r in results:
        m: dict[str, Any] = {f"valid_{k}": v for k, v in r["valid"].items()}
        m["train_seconds"] = r["train_seconds"]
        m["n_trials"] = r["n_trials"]
        if r["candidate"] in (chosen["candidate"], baseline):
            pred = predictors.load(cfg.mlflow, r["kind"], r["model_uri"])
            p = pred.predict(history, test)
            test_pred[f"p_{r['candidate']}"] = p
            m.update({f"test_{k}": v for k, v in metrics(y, p).items()})
            m["p95_latency_ms_per_1k"] = r["valid"]["p95_latency_ms_per_1k"]
            m["model_size_kb"] = r["valid"]["model_size_kb"]
            if r["kind"] != "baseline":
                m["repro_max_abs_diff"] = r["repro_max_abs_diff"]
        candidates[r["candidate"]] = m
    champion: dict[str, Any] = {"version": None, "test_auc": None}
    if champ is not None and champ_pred is not None:
        p = champ_pred.predict(history, test)
        test_pred["p_champion"] = p
        champion = {"version": champ.version, "kind": champ_pred.kind, **{f"test_{k}": v for k, v in
                                                                          metrics(y, p).items()}}
    pred_path = storage.as_string(storage.write_text_atomic(out / "test_predictions.csv",
                                                            test_pred.to_csv(index=False)))
    registry.client(cfg.mlflow)
    with mlflow.start_run(run_id=chosen["mlflow_run_id"]):
        mlflow.log_metrics({k: v for k, v in candidates[chosen["candidate"]].items() if k.startswith("test_")})
        _log_artifacts([pred_path, pareto_file, *([plot] if plot else [])])
    result = TrainResult(cfg.training_run_id, spec.name, cfg.labeled_version_id, cfg.trained_by, chosen["candidate"],
                         chosen["mlflow_run_id"], chosen["model_uri"], candidates, pred_path, manifest["rows"],
                         pareto)
    body = {"candidates": candidates, "chosen": chosen["candidate"], "kind": chosen["kind"],
            "model_uri": chosen["model_uri"], "test_predictions": pred_path, "rows": manifest["rows"],
            "code_version": cfg.code_version, "pareto": {k: v for k, v in pareto.items() if k != "points"},
            "champion": champion, "split_hash": manifest["split_hash"], "spec_hash": spec.spec_hash}
    with engine.begin() as conn:
        conn.execute(model_candidates.insert().values(
            model=spec.name, training_run_id=cfg.training_run_id, data_version=cfg.labeled_version_id,
            mlflow_run_id=chosen["mlflow_run_id"], trained_by=cfg.trained_by, status="trained", created_at=utcnow(),
            code_version=cfg.code_version[:64], metrics=json.loads(json.dumps(body, default=float))))
        audit.append(conn, actor=cfg.trained_by, event_type="train", model=spec.name,
                     entity={"training_run_id": cfg.training_run_id, "data_version": cfg.labeled_version_id,
                             "mlflow_run_id": chosen["mlflow_run_id"]},
                     details={"chosen": chosen["candidate"], "pareto_size": pareto["size"],
                              "test_auc": candidates[chosen["candidate"]].get("test_auc"), "rows": manifest["rows"]})
    log.info("training run %s chose %s (trial %s): test auc %.4f", cfg.training_run_id, chosen["candidate"],
             chosen["chosen_trial"], candidates[chosen["candidate"]]["test_auc"])
    return result


def _log_artifacts(paths: list[str]) -> None:
    """Log stored files to the active MLflow run: ``log_artifact`` wants local files, so they come down to scratch."""
    import mlflow

    with storage.scratch("mlflow-") as tmp:
        for i, path in enumerate(paths):
            local = storage.download_file(path, tmp / str(i) / storage.location(path).name)
            mlflow.log_artifact(str(local))


def train(engine: Engine, cfg: TrainConfig) -> TrainResult:
    """All three steps in one process (tests, the demo and benches); the DAG runs candidates in parallel."""
    done = existing(engine, cfg.training_run_id)
    if done is not None:
        return _from_row(done)
    prepare(engine, cfg)
    return finalize(engine, cfg, [train_candidate(engine, cfg, c.name) for c in cfg.spec.candidates])
