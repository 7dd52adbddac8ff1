"""One candidate, tuned with Optuna on train and validation only, every trial and the final model in MLflow.

A candidate trains in its own task (or pod), so its result goes to a file of the run (``CandidateResult``), not to
XCom. Heavy modules (numpy, pandas, LightGBM, MLflow) are imported inside the functions that use them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from airgate.core import audit, registry, storage
from airgate.core.spec import Candidate
from airgate.data.features import FEATURES
from airgate.model import predictors, tuning
from airgate.model.contracts import SEED, CandidateResult, SplitManifest, TrainConfig, run_dir
from airgate.model.evaluation import metrics
from airgate.model.splits import history_of, load_split, prepare, read_manifest

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)
EARLY_STOPPING_ROUNDS = 30
ONE_THREAD_BELOW_ROWS = 100_000


def lgbm_params(spec_params: dict[str, Any]) -> dict[str, Any]:
    p = dict(spec_params)
    rounds = int(p.pop("n_estimators", 300))
    # Early stopping watches log-loss, not AUC: AUC is rank-only and peaks after a handful of trees, leaving
    # probabilities squeezed around the base rate (fine ranking, useless for calibration and auto-labels).
    base = {
        "objective": "binary",
        "metric": ["binary_logloss", "auc"],
        "first_metric_only": True,
        "verbosity": -1,
        "seed": SEED,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 2,
    }
    base.update(p)
    base["num_boost_round"] = rounds
    return base


Fit = tuple[predictors.Predictor, "np.ndarray", dict[str, Any]]


class Fitter:
    """Fits one candidate kind with given parameters and returns (predictor, valid predictions, fit info)."""

    def __init__(self, engine: Engine, cfg: TrainConfig, cand: Candidate) -> None:
        self.cand = cand
        self.train = load_split(cfg, "train")
        self.valid = load_split(cfg, "valid")
        self.history = (
            history_of(engine, cfg) if cand.kind == "dkt" else self.valid[["event_id", "student_id"]]
        )

    def fit(self, params: dict[str, Any]) -> Fit:
        if self.cand.kind == "baseline":
            pred: predictors.Predictor = predictors.BaselinePredictor()
            info: dict[str, Any] = {}
        elif self.cand.kind == "lightgbm":
            pred, info = self._fit_lightgbm(params)
        else:
            pred, info = self._fit_dkt(params)
        return pred, pred.predict(self.history, self.valid), info

    def _fit_lightgbm(self, params: dict[str, Any]) -> tuple[predictors.Predictor, dict[str, Any]]:
        import lightgbm as lgb

        p = lgbm_params(params)
        # Small data trains faster on one thread, and OpenMP on a busy two-core worker can stall badly.
        p["num_threads"] = 1 if len(self.train) < ONE_THREAD_BELOW_ROWS else p["num_threads"]
        rounds = p.pop("num_boost_round")
        dtrain = lgb.Dataset(self.train[FEATURES], self.train["label"], free_raw_data=False)
        dvalid = lgb.Dataset(self.valid[FEATURES], self.valid["label"], reference=dtrain)
        booster = lgb.train(
            p,
            dtrain,
            num_boost_round=rounds,
            valid_sets=[dvalid],
            callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)],
        )
        # Keep only the trees early stopping chose, so the logged model is exactly the evaluated one.
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
        return predictors.LightGBMPredictor(booster), {"best_iteration": booster.current_iteration()}

    def _fit_dkt(self, params: dict[str, Any]) -> tuple[predictors.Predictor, dict[str, Any]]:
        import pandas as pd

        from airgate.model import dkt, dkt_training

        targets = pd.concat([self.train[["event_id", "label"]], self.valid[["event_id", "label"]]])
        model = dkt_training.fit(
            self.history,
            targets,
            set(self.train["student_id"]),
            set(self.valid["student_id"]),
            dkt.DKTParams.from_dict(params),
        )
        return predictors.DKTPredictor(model), {"best_epoch": model.best_epoch}

    def measure(self, pred: predictors.Predictor, valid_p: np.ndarray) -> dict[str, float]:
        m = metrics(self.valid["label"].to_numpy(), valid_p)
        m["p95_latency_ms_per_1k"] = predictors.latency_ms_per_1k(pred, self.history, self.valid)
        m["model_size_kb"] = pred.size_kb
        return m


def result_path(cfg: TrainConfig, name: str) -> str:
    """Where a candidate's full result (every trial) is, spelled as ``storage.as_string`` (a plain path on a
    local root, a URI otherwise); ``load_result`` reads it."""
    return storage.as_string(run_dir(cfg) / "candidates" / f"{name}.json")


def load_result(cfg: TrainConfig, name: str) -> CandidateResult:
    """A finished candidate's result, as ``train_candidate`` wrote it (for the task that selects and tests)."""
    return CandidateResult.from_json(
        storage.read_text(result_path(cfg, name), what=f"the result of candidate {name}")
    )


def find_candidate(cfg: TrainConfig, name: str) -> Candidate:
    cand = next((c for c in cfg.spec.candidates if c.name == name), None)
    if cand is None:
        raise ValueError(
            f"{name!r} is not a candidate of {cfg.spec.name}: {[c.name for c in cfg.spec.candidates]}"
        )
    return cand


def run_tags(cfg: TrainConfig, cand: Candidate, manifest: SplitManifest) -> dict[str, str]:
    """The MLflow tags every run of this candidate (the parent and each trial) carries: its lineage."""
    return {
        "airgate.model": cfg.spec.name,
        "airgate.data_version": cfg.labeled_version_id,
        "airgate.label_version": cfg.labeled_version_id,
        "airgate.training_run_id": cfg.training_run_id,
        "airgate.spec_hash": cfg.spec.spec_hash,
        "airgate.code_version": cfg.code_version,
        "airgate.trained_by": cfg.trained_by,
        "airgate.split_hash": manifest.split_hash,
        "airgate.candidate": cand.name,
        predictors.KIND_TAG: cand.kind,
    }


class TrialLog:
    """The study's callbacks: fit and measure a trial, then log it as a nested MLflow run.

    Keeps each trial's validation predictions, so the chosen one can be compared with its refit.
    """

    def __init__(self, fitter: Fitter, experiment_id: str, tags: dict[str, str]) -> None:
        self.fitter = fitter
        self.experiment_id = experiment_id
        self.tags = tags
        self.valid_preds: dict[int, np.ndarray] = {}
        self._last: dict[str, Any] = {}  # the latest trial's validation predictions and fit info

    def evaluate(self, params: dict[str, Any]) -> dict[str, float]:
        pred, valid_p, info = self.fitter.fit(params)
        self._last.update(valid_p=valid_p, info=info)
        return self.fitter.measure(pred, valid_p)

    def on_trial(self, number: int, params: dict[str, Any], m: dict[str, float]) -> None:
        import mlflow

        self.valid_preds[number] = self._last["valid_p"]
        with mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=f"trial-{number}",
            nested=True,
            tags={**self.tags, "airgate.trial": str(number)},
        ):
            mlflow.log_params({**params, **self._last["info"]})
            mlflow.log_metrics({f"valid_{k}": v for k, v in m.items()})

    def reference(self, best: tuning.Point) -> np.ndarray:
        """The chosen trial's validation predictions; after a resumed study they died with the earlier process,
        so they are fitted a second time."""
        if best.trial in self.valid_preds:
            return self.valid_preds[best.trial]
        return self.fitter.fit(best.params)[1]


def refit_chosen(trials: TrialLog, best: tuning.Point) -> tuple[Fit, float]:
    """Reproducibility: fit the chosen configuration again from scratch and compare with its trial."""
    import numpy as np

    fit = trials.fitter.fit(best.params)
    valid_p = fit[1]
    reference = trials.reference(best)
    repro = float(np.max(np.abs(np.asarray(valid_p) - np.asarray(reference)))) if len(valid_p) else 0.0
    return fit, repro


@contextmanager
def _candidate_run(
    engine: Engine, cfg: TrainConfig, cand: Candidate, manifest: SplitManifest
) -> Iterator[tuple[Any, TrialLog]]:
    """The candidate's parent MLflow run, with the fitter and the trial callbacks that log under it."""
    import mlflow

    fitter = Fitter(engine, cfg, cand)
    exp_id = registry.experiment_id(cfg.mlflow, cfg.spec.name)
    registry.client(cfg.mlflow)
    tags = run_tags(cfg, cand, manifest)
    with mlflow.start_run(
        experiment_id=exp_id, run_name=f"{cfg.training_run_id}:{cand.name}", tags=tags
    ) as run:
        mlflow.log_params({f"rows_{k}": v for k, v in manifest.rows.items()})
        yield run, TrialLog(fitter, exp_id, tags)


def train_candidate(engine: Engine, cfg: TrainConfig, name: str) -> CandidateResult:
    """Tune, fit and log one candidate on train + validation. Idempotent: a finished candidate is returned as is."""
    if storage.exists(result_path(cfg, name)):
        return load_result(cfg, name)
    cand = find_candidate(cfg, name)
    manifest = prepare(engine, cfg)
    t0 = time.perf_counter()
    with _candidate_run(engine, cfg, cand, manifest) as (run, trials):
        points = tuning.run_study(
            cfg.spec,
            cand,
            engine.url.render_as_string(hide_password=False),
            f"{cfg.training_run_id}:{name}",
            trials.evaluate,
            on_trial=trials.on_trial,
        )
        # With no feasible trial the candidate still reports its best point, marked infeasible: finalize skips it.
        best = tuning.select(points, cfg.spec, among=None if any(p.feasible for p in points) else "all")
        result = _log_final(trials, best, points, run.info.run_id, t0)
    _audit_tuning(engine, cfg, result, points)
    storage.write_text_atomic(result_path(cfg, name), result.to_json())
    log.info(
        "candidate %s of %s: valid auc %.4f after %d trials (%.1fs)",
        name,
        cfg.training_run_id,
        result.valid["auc"],
        len(points),
        result.train_seconds,
    )
    return result


def _log_final(
    trials: TrialLog, best: tuning.Point, points: list[tuning.Point], mlflow_run_id: str, t0: float
) -> CandidateResult:
    """Refit the chosen configuration, log it (parameters, metrics, the model) to the candidate's run."""
    import mlflow

    (pred, valid_p, info), repro = refit_chosen(trials, best)
    final = trials.fitter.measure(pred, valid_p)
    mlflow.log_params({k: v for k, v in best.params.items()})
    mlflow.log_params({"chosen_trial": best.trial, "n_trials": len(points), **info})
    mlflow.log_metrics({f"valid_{k}": v for k, v in final.items()} | {"repro_max_abs_diff": repro})
    model_uri = _log_model(pred, trials.fitter.train, trials.fitter.history)
    seconds = time.perf_counter() - t0
    mlflow.log_metric("train_seconds", seconds)
    return CandidateResult(
        trials.fitter.cand.name,
        trials.fitter.cand.kind,
        mlflow_run_id,
        model_uri,
        best.params,
        best.trial,
        len(points),
        best.feasible,
        final,
        repro,
        seconds,
        tuple(points),
    )


def _audit_tuning(
    engine: Engine, cfg: TrainConfig, result: CandidateResult, points: list[tuning.Point]
) -> None:
    audit.record(
        engine,
        actor=cfg.trained_by,
        event_type="tune",
        model=cfg.spec.name,
        entity={
            "training_run_id": cfg.training_run_id,
            "candidate": result.candidate,
            "mlflow_run_id": result.mlflow_run_id,
        },
        details={
            "n_trials": len(points),
            "front": sum(p.on_front for p in points),
            "chosen_trial": result.chosen_trial,
            "valid_auc": result.valid["auc"],
            "feasible": result.feasible,
        },
    )


def _log_model(pred: predictors.Predictor, train: pd.DataFrame, history: pd.DataFrame) -> str:
    """Log the final model with its signature, an input example and its requirements; '' for the baseline."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    if isinstance(pred, predictors.LightGBMPredictor):
        import lightgbm as lgb

        example = train[FEATURES].head(5)
        info = mlflow.lightgbm.log_model(
            pred.booster,
            name="model",
            signature=infer_signature(example, pred.booster.predict(example)),
            input_example=example,
            pip_requirements=[f"lightgbm=={lgb.__version__}", f"pandas=={pd.__version__}"],
        )
        return str(info.model_uri)
    if isinstance(pred, predictors.DKTPredictor):
        from airgate.model import dkt

        example = history[history["student_id"] == history["student_id"].iloc[0]].head(20)
        return str(dkt.log_model(pred.model, "model", example).model_uri)
    return ""


def train_candidate_from_env(model: str, training_run_id: str, candidate: str) -> dict[str, Any]:
    """Entry point for a pod: everything but the ids comes from the environment and the run's split manifest.

    Returns the small JSON summary the pod hands back (the full result is the run's file)."""
    from airgate.core.run_identity import load_identity
    from airgate.core.settings import code_version, mlflow_config, runs_dir, warehouse_engine
    from airgate.core.spec import find_spec

    spec = find_spec(model)
    engine = warehouse_engine()
    # Who trained and on which version come from the run's identity record, not from anything the pod was handed.
    ident = load_identity(engine, training_run_id)
    if ident is None or ident.model != spec.name:
        raise RuntimeError(f"training run {training_run_id} has no identity record for {spec.name}")
    manifest = read_manifest(storage.location(runs_dir()) / training_run_id / "split")
    cfg = TrainConfig(
        spec,
        ident.labeled_version_id,
        training_run_id,
        ident.trained_by,
        mlflow_config(),
        runs_dir(),
        manifest.code_version or code_version(),
    )
    return train_candidate(engine, cfg, candidate).xcom()
