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

Each step lives in its own module (``splits``, ``candidates``, ``selection``, ``evaluation``; the records they pass
are in ``contracts``); this one composes them and keeps the names that the DAG, the CLI and the tests call.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate.core import audit, registry, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import model_candidates, utcnow

# The stages live in their own modules; these names are the stable ones that the DAG, the CLI and tests use.
from airgate.model.candidates import (  # noqa: F401
    Fitter,
    lgbm_params,
    load_result,
    result_path,
    train_candidate,
    train_candidate_from_env,
)
from airgate.model.contracts import (  # noqa: F401
    SEED,
    CandidateResult,
    SplitManifest,
    TrainConfig,
    TrainingRecord,
    TrainResult,
    run_dir,
)
from airgate.model.evaluation import TestEvaluation, evaluate_on_test, metrics  # noqa: F401
from airgate.model.selection import Selection, select_candidate, write_pareto
from airgate.model.splits import (  # noqa: F401
    SPLIT_COLUMNS,
    TestSetAlreadyRead,
    load_split,
    prepare,
    read_manifest,
    read_test_once,
    test_reads,
    time_split,
    training_frame,
)

log = logging.getLogger(__name__)


def existing(engine: Engine, training_run_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        r = conn.execute(
            select(model_candidates).where(model_candidates.c.training_run_id == training_run_id)
        ).first()
    return dict(r._mapping) if r else None


def candidate_row(engine: Engine, training_run_id: str) -> dict[str, Any]:
    """The run's ``model_candidates`` row, which finalize writes: what the gates and registration read."""
    row = existing(engine, training_run_id)
    if row is None:
        raise LookupError(
            f"training run {training_run_id} has no model_candidates row: its finalize has not run"
        )
    return row


def already_trained(
    engine: Engine, spec: ModelSpec, labeled_version_id: str, code_version: str
) -> dict[str, Any] | None:
    """The newest training run on this labeled version with this spec and code, if any.

    Splits, samplers and fits are seeded (the reproducibility gate checks the fit), so the same data, spec and code
    give the same model again, up to a search steered by measured latency: a retraining trigger that finds such a
    run has nothing new to learn from, and a second approval request for it would only cost approvers time.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            select(model_candidates)
            .where(
                model_candidates.c.model == spec.name,
                model_candidates.c.data_version == labeled_version_id,
                model_candidates.c.code_version == code_version[:64],
            )
            .order_by(model_candidates.c.id.desc())
        ).all()
    for r in rows:
        if (r.metrics or {}).get("spec_hash") == spec.spec_hash:
            return dict(r._mapping)
    return None


def finalize(engine: Engine, cfg: TrainConfig, results: list[CandidateResult]) -> TrainResult:
    """Select by the spec's rule, then evaluate the chosen model, the baseline and the champion on the test split."""
    done = existing(engine, cfg.training_run_id)
    if done is not None:
        log.info("training run %s already finished; returning it", cfg.training_run_id)
        return TrainResult.from_row(done)
    manifest = prepare(engine, cfg)
    selection = select_candidate(cfg, results)  # raises NoFeasiblePoint before the test split is opened
    pareto = write_pareto(cfg, selection)
    evaluation = evaluate_on_test(engine, cfg, results, selection.chosen, selection.baseline)
    predictions_path = storage.as_string(
        storage.write_text_atomic(
            run_dir(cfg) / "test_predictions.csv", evaluation.predictions.to_csv(index=False)
        )
    )
    _log_test_to_mlflow(
        cfg,
        selection.chosen,
        evaluation,
        [predictions_path, pareto["path"], *([pareto["plot"]] if pareto["plot"] else [])],
    )
    record = _training_record(cfg, manifest, selection, evaluation, predictions_path, pareto)
    _record_training(engine, cfg, selection.chosen, record)
    chosen = selection.chosen
    log.info(
        "training run %s chose %s (trial %s): test auc %.4f",
        cfg.training_run_id,
        chosen.candidate,
        chosen.chosen_trial,
        evaluation.candidates[chosen.candidate]["test_auc"],
    )
    return TrainResult(
        cfg.training_run_id,
        cfg.spec.name,
        cfg.labeled_version_id,
        cfg.trained_by,
        chosen.candidate,
        chosen.mlflow_run_id,
        chosen.model_uri,
        evaluation.candidates,
        predictions_path,
        manifest.rows,
        pareto,
    )


def _log_test_to_mlflow(
    cfg: TrainConfig, chosen: CandidateResult, evaluation: TestEvaluation, artifacts: list[str]
) -> None:
    """The chosen candidate's test metrics and the run's evidence files, on the candidate's own MLflow run."""
    import mlflow

    registry.client(cfg.mlflow)
    with mlflow.start_run(run_id=chosen.mlflow_run_id):
        mlflow.log_metrics(
            {k: v for k, v in evaluation.candidates[chosen.candidate].items() if k.startswith("test_")}
        )
        _log_artifacts(artifacts)


def _training_record(
    cfg: TrainConfig,
    manifest: SplitManifest,
    selection: Selection,
    evaluation: TestEvaluation,
    predictions_path: str,
    pareto: dict[str, Any],
) -> TrainingRecord:
    chosen = selection.chosen
    return TrainingRecord(
        candidates=evaluation.candidates,
        chosen=chosen.candidate,
        kind=chosen.kind,
        model_uri=chosen.model_uri,
        test_predictions=predictions_path,
        rows=manifest.rows,
        code_version=cfg.code_version,
        pareto={k: v for k, v in pareto.items() if k != "points"},
        champion=evaluation.champion,
        split_hash=manifest.split_hash,
        spec_hash=cfg.spec.spec_hash,
    )


def _record_training(
    engine: Engine, cfg: TrainConfig, chosen: CandidateResult, record: TrainingRecord
) -> None:
    """The run's ``model_candidates`` row and its audit entry, in one transaction."""
    with engine.begin() as conn:
        conn.execute(
            model_candidates.insert().values(
                model=cfg.spec.name,
                training_run_id=cfg.training_run_id,
                data_version=cfg.labeled_version_id,
                mlflow_run_id=chosen.mlflow_run_id,
                trained_by=cfg.trained_by,
                status="trained",
                created_at=utcnow(),
                code_version=cfg.code_version[:64],
                metrics=record.to_dict(),
            )
        )
        audit.append(
            conn,
            actor=cfg.trained_by,
            event_type="train",
            model=cfg.spec.name,
            entity={
                "training_run_id": cfg.training_run_id,
                "data_version": cfg.labeled_version_id,
                "mlflow_run_id": chosen.mlflow_run_id,
            },
            details={
                "chosen": chosen.candidate,
                "pareto_size": record.pareto["size"],
                "test_auc": record.candidates[chosen.candidate].get("test_auc"),
                "rows": record.rows,
            },
        )


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
        return TrainResult.from_row(done)
    prepare(engine, cfg)
    return finalize(engine, cfg, [train_candidate(engine, cfg, c.name) for c in cfg.spec.candidates])
