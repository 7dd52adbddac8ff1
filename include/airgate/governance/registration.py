"""A gated candidate becomes an MLflow model version with an open approval request.

This is governance's step, not the model layer's: it refuses a run that did not pass its gates and opens the request
that the approval rules (``promotion``) then decide. The model layer below records and gates candidates only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine

from airgate.core import audit, registry, storage
from airgate.core.run_identity import load_identity
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import model_candidates
from airgate.governance import promotion
from airgate.model import training
from airgate.model.contracts import TrainingRecord

REGISTRABLE = ("gates_passed", "registered")


def register_and_request(
    engine: Engine,
    spec: ModelSpec,
    cfg: registry.MlflowConfig,
    training_run_id: str,
    actor: str = "airflow",
    require_identity: bool = False,
    runs_dir: storage.Location | None = None,
) -> dict[str, str]:
    """Register the gated candidate in MLflow and open its approval request. Idempotent per training run.

    The request's ``requested_by`` is the trainer named by the run's identity record (``core.run_identity``),
    never a name that travelled with the run; the train DAG passes ``require_identity`` so a run without one is
    refused. Returns the small JSON the DAG task hands on: the model version and the approval request id.
    """
    cand = training.candidate_row(engine, training_run_id)
    if cand["status"] not in REGISTRABLE:
        raise promotion.GovernanceError(
            "not_approvable", 409, f"training run {training_run_id} did not pass its gates ({cand['status']})"
        )
    requested_by = _trainer(engine, spec, cand, require_identity)
    version = cand["model_version"]
    if version is None:
        version = _register(engine, spec, cfg, cand, actor)
    request_id = promotion.open_request(
        engine,
        spec,
        version,
        training_run_id,
        cand["gate_report"],
        cand["evidence_hash"],
        requested_by,
        runs_dir=runs_dir,  # where the run's report files are, to hash them (default: the storage's runs)
    )
    return {"model_version": str(version), "approval_request_id": request_id}


def _trainer(engine: Engine, spec: ModelSpec, cand: Any, require_identity: bool) -> str:
    """Who trained the candidate, from the run's identity record; a candidate row that disagrees with its record
    (or, when required, a run without one) cannot open a request."""
    run_id = cand["training_run_id"]
    ident = load_identity(engine, run_id)
    if ident is None:
        if require_identity:
            raise promotion.GovernanceError(
                "no_identity", 409, f"training run {run_id} has no identity record: who trained it is unknown"
            )
        return str(cand["trained_by"])
    if ident.model != spec.name or ident.trained_by != cand["trained_by"]:
        raise promotion.GovernanceError(
            "identity_mismatch",
            409,
            f"training run {run_id} names {cand['trained_by']!r} as trainer but its identity record says "
            f"{ident.trained_by!r} (model {ident.model})",
        )
    return ident.trained_by


def _register(engine: Engine, spec: ModelSpec, cfg: registry.MlflowConfig, cand: Any, actor: str) -> str:
    """A new MLflow version tagged with the run's lineage, recorded on the candidate's row and in the audit log."""
    record = TrainingRecord.from_dict(cand["metrics"])
    training_run_id = cand["training_run_id"]
    version = registry.register(
        cfg,
        spec.name,
        record.model_uri,
        {
            "airgate.training_run_id": training_run_id,
            "airgate.data_version": cand["data_version"],
            "airgate.evidence_hash": cand["evidence_hash"],
            "airgate.spec_hash": spec.spec_hash,
            "airgate.trained_by": cand["trained_by"],
            "airgate.code_version": record.code_version,
            "airgate.label_version": cand["data_version"],
            "airgate.kind": str(record.kind or "lightgbm"),
            "airgate.mlflow_run_id": str(cand["mlflow_run_id"]),
        },
    )
    with engine.begin() as conn:
        conn.execute(
            update(model_candidates)
            .where(model_candidates.c.training_run_id == training_run_id)
            .values(model_version=version, status="registered")
        )
        audit.append(
            conn,
            actor=actor,
            event_type="register",
            model=spec.name,
            entity={"training_run_id": training_run_id, "model_version": version},
            details={"model_uri": record.model_uri},
        )
    return str(version)
