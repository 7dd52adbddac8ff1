"""The one evaluation on the test split: the chosen model, the baseline and the current champion on the same rows.

Heavy modules (numpy, pandas, scikit-learn) are imported inside the functions, so importing training stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from airgate.core.champion import current_champion
from airgate.model import predictors
from airgate.model.contracts import CandidateResult, TrainConfig
from airgate.model.splits import history_of, read_test_once

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    p = np.clip(p, 1e-6, 1 - 1e-6)
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(
        abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).mean()
        for b in range(10)
        if (bins == b).any()
    )
    return {
        "auc": float(roc_auc_score(y, p)),
        "logloss": float(log_loss(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "ece": float(ece),
    }


@dataclass
class TestEvaluation:
    """Test metrics per candidate (costs and validation metrics too), the champion's, and the per-row predictions."""

    candidates: dict[str, dict[str, Any]]
    champion: dict[str, Any]
    predictions: pd.DataFrame


def evaluate_on_test(
    engine: Engine, cfg: TrainConfig, results: list[CandidateResult], chosen: CandidateResult, baseline: str
) -> TestEvaluation:
    """Read the test split (the one read) and score the chosen model, the baseline and the champion on it."""
    test = read_test_once(engine, cfg, chosen.model_uri)
    champ = current_champion(engine, cfg.spec.name)
    champ_version = champ.version if champ else None
    champ_pred = predictors.load_version(cfg.mlflow, cfg.spec.name, champ_version) if champ_version else None
    kinds = {chosen.kind} | ({champ_pred.kind} if champ_pred is not None else set())
    history = history_of(engine, cfg) if "dkt" in kinds else test[["event_id", "student_id"]]
    predictions = _prediction_frame(test)
    y = predictions["label"].to_numpy()
    candidates = {}
    for r in results:
        m = _validation_summary(r)
        if r.candidate in (chosen.candidate, baseline):
            p = predictors.load(cfg.mlflow, r.kind, r.model_uri).predict(history, test)
            predictions[f"p_{r.candidate}"] = p
            m.update(_test_summary(r, metrics(y, p)))
        candidates[r.candidate] = m
    champion: dict[str, Any] = {"version": None, "test_auc": None}
    if champ_version is not None and champ_pred is not None:
        p = champ_pred.predict(history, test)
        predictions["p_champion"] = p
        champion = {
            "version": champ_version,
            "kind": champ_pred.kind,
            **{f"test_{k}": v for k, v in metrics(y, p).items()},
        }
    return TestEvaluation(candidates, champion, predictions)


def _prediction_frame(test: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {
            "event_id": test["event_id"].to_numpy(),
            "student_id": test["student_id"].to_numpy(),
            "label": test["label"].to_numpy(),
        }
    )


def _validation_summary(r: CandidateResult) -> dict[str, Any]:
    m: dict[str, Any] = {f"valid_{k}": v for k, v in r.valid.items()}
    m["train_seconds"] = r.train_seconds
    m["n_trials"] = r.n_trials
    return m


def _test_summary(r: CandidateResult, test_metrics: dict[str, float]) -> dict[str, Any]:
    """Test metrics and the costs the gates compare; reproducibility only for a model that was refit."""
    m: dict[str, Any] = {f"test_{k}": v for k, v in test_metrics.items()}
    m["p95_latency_ms_per_1k"] = r.valid["p95_latency_ms_per_1k"]
    m["model_size_kb"] = r.valid["model_size_kb"]
    if r.kind != "baseline":
        m["repro_max_abs_diff"] = r.repro_max_abs_diff
    return m
