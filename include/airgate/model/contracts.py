"""The typed contracts between the training stages: what one stage writes and the next one reads.

Each stage used to hand the next a dict read back by string keys; a renamed key then failed three modules away, at
run time. These frozen records are the one place the shapes are spelled. Each has ``to_json`` / ``from_json`` (or
``to_dict`` / ``from_dict``) for the file or database column it lives in, in the exact format written before, so
runs recorded by earlier releases still read back. XCom only ever carries ids and the small JSON of ``xcom()``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from airgate.core import registry, storage
from airgate.core.spec import ModelSpec
from airgate.model.tuning import Point

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


def run_dir(cfg: TrainConfig) -> storage.StoragePath:
    """The training run's folder in storage: the split, each candidate's result, the Pareto files, predictions."""
    return storage.location(cfg.runs_dir) / cfg.training_run_id


@dataclass(frozen=True)
class SplitManifest:
    """``runs/<training run>/split/manifest.json``: written last, so a split exists once its manifest does."""

    model: str
    training_run_id: str
    labeled_version_id: str
    trained_by: str
    code_version: str
    spec_hash: str
    rows: dict[str, int]
    students: dict[str, int]
    sha256: dict[str, str]
    split_hash: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SplitManifest:
        d = json.loads(text)
        # Manifests written before the code version was recorded lack it: "" lets the reader fall back.
        return cls(
            d["model"],
            d["training_run_id"],
            d["labeled_version_id"],
            d["trained_by"],
            d.get("code_version") or "",
            d["spec_hash"],
            dict(d["rows"]),
            dict(d["students"]),
            dict(d["sha256"]),
            d["split_hash"],
        )

    def xcom(self) -> dict[str, Any]:
        """What the split task hands its downstream tasks: ids and counts, never the rows."""
        return {
            "training_run_id": self.training_run_id,
            "labeled_version_id": self.labeled_version_id,
            "trained_by": self.trained_by,
            "rows": dict(self.rows),
            "split_hash": self.split_hash,
        }


@dataclass(frozen=True)
class CandidateResult:
    """One tuned candidate: ``runs/<training run>/candidates/<name>.json``, written by ``train_candidate``."""

    candidate: str
    kind: str
    mlflow_run_id: str
    model_uri: str  # '' for the baseline, which is not logged as a model
    params: dict[str, Any]
    chosen_trial: int
    n_trials: int
    feasible: bool
    valid: dict[str, float]  # validation metrics of the final refit
    repro_max_abs_diff: float
    train_seconds: float
    points: tuple[Point, ...] = ()  # every trial, as measured

    def to_json(self) -> str:
        body = {
            "candidate": self.candidate,
            "kind": self.kind,
            "mlflow_run_id": self.mlflow_run_id,
            "model_uri": self.model_uri,
            "params": self.params,
            "chosen_trial": self.chosen_trial,
            "n_trials": self.n_trials,
            "feasible": self.feasible,
            "valid": self.valid,
            "repro_max_abs_diff": self.repro_max_abs_diff,
            "train_seconds": self.train_seconds,
            "points": [p.to_dict() for p in self.points],
        }
        return json.dumps(body, default=float)

    @classmethod
    def from_json(cls, text: str) -> CandidateResult:
        d = json.loads(text)
        return cls(
            d["candidate"],
            d["kind"],
            d["mlflow_run_id"],
            d["model_uri"],
            dict(d["params"]),
            int(d["chosen_trial"]),
            int(d["n_trials"]),
            bool(d["feasible"]),
            dict(d["valid"]),
            float(d["repro_max_abs_diff"]),
            float(d["train_seconds"]),
            tuple(Point.from_dict(p) for p in d["points"]),
        )

    def representative(self) -> Point:
        """The candidate's chosen configuration as one point, for the selection across candidates."""
        return Point(self.candidate, self.chosen_trial, self.params, self.valid, self.feasible)

    def xcom(self) -> dict[str, Any]:
        """The mapped task's return value: a summary; the full result is the file."""
        return {"candidate": self.candidate, "valid_auc": self.valid["auc"], "n_trials": self.n_trials}


@dataclass(frozen=True)
class TrainingRecord:
    """``model_candidates.metrics``: what finalize recorded about a training run, read by the gates and registration."""

    candidates: dict[str, dict[str, Any]]  # per candidate: valid_*, test_* (chosen and baseline), costs
    chosen: str
    kind: str | None
    model_uri: str
    test_predictions: str
    rows: dict[str, int]
    code_version: str
    pareto: dict[str, Any]
    champion: dict[str, Any]
    split_hash: str | None
    spec_hash: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (numpy floats become floats), as the JSON column stores it."""
        return dict(json.loads(json.dumps(asdict(self), default=float)))

    @classmethod
    def from_dict(cls, m: dict[str, Any]) -> TrainingRecord:
        return cls(
            m["candidates"],
            m["chosen"],
            m.get("kind"),
            m["model_uri"],
            m["test_predictions"],
            m["rows"],
            m.get("code_version", "unknown"),
            m.get("pareto", {}),
            m.get("champion") or {},
            m.get("split_hash"),
            m.get("spec_hash"),
        )


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

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TrainResult:
        """A finished run as its ``model_candidates`` row recorded it."""
        m = TrainingRecord.from_dict(row["metrics"])
        return cls(
            row["training_run_id"],
            row["model"],
            row["data_version"],
            row["trained_by"],
            m.chosen,
            row["mlflow_run_id"],
            m.model_uri,
            m.candidates,
            m.test_predictions,
            m.rows,
            m.pareto,
        )

    def xcom(self) -> dict[str, Any]:
        """The select-and-test task's return value."""
        return {
            "training_run_id": self.training_run_id,
            "data_version": self.data_version,
            "chosen": self.chosen,
            "test_auc": self.metrics[self.chosen]["test_auc"],
            "pareto_size": self.pareto.get("size"),
        }
