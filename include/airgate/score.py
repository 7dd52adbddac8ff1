"""Batch scoring: only the approved champion, features from the training code path, staged then swapped.

The champion is resolved once, at the start, from the MLflow alias and checked against the promotion ledger; a
version the ledger does not show as the approved champion is refused. Predictions are written in chunks to a
staging table under the scoring run id, then swapped into the partition (model, logical date) in one transaction.
A retry, a re-run of the same date, or a task killed mid-write therefore leaves exactly one set of predictions.
Every prediction row carries model version, approval id, scoring run id and feature data version.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from airgate import audit, datasets, governance, predictors, registry
from airgate.features import build_features, load_history
from airgate.spec import ModelSpec
from airgate.warehouse import bulk_insert_tuples, predictions, predictions_staging, scoring_runs, utcnow

log = logging.getLogger(__name__)

PRED_COLUMNS = ["model", "partition_key", "event_id", "student_id", "item_id", "score", "model_version",
                "approval_id", "scoring_run_id", "feature_data_version"]


class NotApproved(RuntimeError):
    """The model version asked to score is not the ledger's approved champion."""


@dataclass(frozen=True)
class ScoreConfig:
    spec: ModelSpec
    mlflow: registry.MlflowConfig
    partition_key: str
    scoring_run_id: str
    feature_version_id: str | None = None
    model_version: str | None = None  # None: whatever the champion alias names now
    actor: str = "airflow"


@dataclass(frozen=True)
class ScoreResult:
    scoring_run_id: str
    model: str
    partition_key: str
    model_version: str
    approval_id: str
    feature_data_version: str
    rows_scored: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_champion(engine: Engine, spec: ModelSpec, cfg: registry.MlflowConfig,
                     requested_version: str | None = None) -> tuple[str, str]:
    """(version, approval_id) to score with; raises NotApproved with the reason otherwise."""
    version = requested_version or registry.alias_version(cfg, spec.name)
    if version is None:
        raise NotApproved(f"model '{spec.name}' has no champion: approve a version in the Governance view first")
    approval_id = governance.approved_version(engine, spec.name, version)
    if approval_id is None:
        champ = governance.current_champion(engine, spec.name)
        raise NotApproved(
            f"refusing to score with {spec.name} v{version}: the promotion ledger does not show it as the approved "
            f"champion (ledger champion: {('v' + champ.version) if champ else 'none'})")
    return str(version), approval_id


def score(engine: Engine, cfg: ScoreConfig) -> ScoreResult:
    spec = cfg.spec
    version, approval_id = resolve_champion(engine, spec, cfg.mlflow, cfg.model_version)
    target = datasets.get(engine, cfg.feature_version_id) if cfg.feature_version_id else \
        datasets.latest(engine, spec.name, "clean")
    if target is None:
        raise ValueError(f"no clean dataset version to score for {spec.name}")
    with engine.begin() as conn:
        conn.execute(delete(predictions_staging).where(predictions_staging.c.scoring_run_id == cfg.scoring_run_id))
        conn.execute(delete(scoring_runs).where(scoring_runs.c.run_id == cfg.scoring_run_id))
        conn.execute(scoring_runs.insert().values(
            run_id=cfg.scoring_run_id, model=spec.name, partition_key=cfg.partition_key, model_version=version,
            approval_id=approval_id, feature_data_version=target.version_id, status="running", started_at=utcnow()))

    predictor = predictors.load_version(cfg.mlflow, spec.name, version)
    history = load_history(engine, spec.name)
    feats = build_features(history)
    meta = history[history["version_id"] == target.version_id][["event_id", "student_id", "item_id"]]
    rows = meta.merge(feats, on="event_id", how="left").sort_values("event_id", kind="mergesort")
    chunk = spec.scoring.chunk_rows
    written = 0
    for start in range(0, len(rows), chunk):
        part = rows.iloc[start:start + chunk]
        p = np.asarray(predictor.predict(history, part), dtype="float64")
        tuples = list(zip([spec.name] * len(part), [cfg.partition_key] * len(part), part["event_id"].tolist(),
                          part["student_id"].tolist(), part["item_id"].tolist(), p.tolist(),
                          [version] * len(part), [approval_id] * len(part), [cfg.scoring_run_id] * len(part),
                          [target.version_id] * len(part), strict=True))
        with engine.begin() as conn:
            written += bulk_insert_tuples(conn, predictions_staging, PRED_COLUMNS, tuples)

    with engine.begin() as conn:  # the swap: the partition changes in one commit, or not at all
        conn.execute(delete(predictions).where(predictions.c.model == spec.name,
                                               predictions.c.partition_key == cfg.partition_key))
        cols = [predictions_staging.c[c] for c in PRED_COLUMNS]
        conn.execute(insert(predictions).from_select(
            PRED_COLUMNS, select(*cols).where(predictions_staging.c.scoring_run_id == cfg.scoring_run_id)))
        conn.execute(delete(predictions_staging).where(predictions_staging.c.scoring_run_id == cfg.scoring_run_id))
        conn.execute(update(scoring_runs).where(scoring_runs.c.run_id == cfg.scoring_run_id)
                     .values(status="succeeded", rows_scored=written, finished_at=utcnow()))
        audit.append(conn, actor=cfg.actor, event_type="scoring_run", model=spec.name,
                     entity={"scoring_run_id": cfg.scoring_run_id, "model_version": version,
                             "approval_id": approval_id, "feature_data_version": target.version_id},
                     details={"rows": written, "partition_key": cfg.partition_key})
    log.info("scored %d rows of %s with %s v%s (approval %s)", written, target.version_id, spec.name, version,
             approval_id)
    return ScoreResult(cfg.scoring_run_id, spec.name, cfg.partition_key, version, approval_id, target.version_id,
                       written)


def refuse(engine: Engine, spec: ModelSpec, scoring_run_id: str, reason: str, actor: str = "airflow") -> None:
    """Audit a refused scoring run, so the refusal is on the record and not only in a task log."""
    audit.record(engine, actor=actor, event_type="scoring_refused", model=spec.name,
                 entity={"scoring_run_id": scoring_run_id}, details={"reason": reason})
