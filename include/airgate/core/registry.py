"""MLflow: tracking, registration and the ``champion`` alias. Aliases only; the deprecated stages are never used.

The alias is a pointer that MLflow itself does not guard. airgate guards it: only governance moves it, and
scoring double-checks every alias target against the promotion ledger before it trusts it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHAMPION = "champion"


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str
    artifact_root: str

    @classmethod
    def under(cls, home: Path | str) -> MlflowConfig:
        home = Path(home)
        return cls(f"sqlite:///{home / 'mlflow.db'}", str(home / "mlartifacts"))


def client(cfg: MlflowConfig) -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.tracking_uri)
    return MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)


def experiment_id(cfg: MlflowConfig, model: str) -> str:
    c = client(cfg)
    exp = c.get_experiment_by_name(model)
    if exp is not None:
        return str(exp.experiment_id)
    return str(c.create_experiment(model, artifact_location=artifact_location(cfg.artifact_root, model)))


def artifact_location(root: str, model: str) -> str:
    """A model's experiment artifacts under the root: an object-store URI (s3://, gs://, file://) as given, a plain
    folder as a file:// URI (created, as MLflow's local store expects)."""
    if "://" in root:
        return f"{root.rstrip('/')}/{model}"
    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(root, model).as_uri()


def register(cfg: MlflowConfig, model: str, model_uri: str, tags: dict[str, str]) -> str:
    """Register a logged model as a new version of ``model``, tagged with airgate's ids."""
    import mlflow

    client(cfg)
    mv = mlflow.register_model(model_uri, model, tags=tags)
    return str(mv.version)


def alias_version(cfg: MlflowConfig, model: str, alias: str = CHAMPION) -> str | None:
    c = client(cfg)
    try:
        return str(c.get_model_version_by_alias(model, alias).version)
    except Exception:  # noqa: BLE001 - no alias, or no registered model yet
        return None


def set_alias(cfg: MlflowConfig, model: str, version: str, alias: str = CHAMPION) -> None:
    client(cfg).set_registered_model_alias(model, alias, version)


def delete_alias(cfg: MlflowConfig, model: str, alias: str = CHAMPION) -> None:
    client(cfg).delete_registered_model_alias(model, alias)


def version_tags(cfg: MlflowConfig, model: str, version: str) -> dict[str, str]:
    return dict(client(cfg).get_model_version(model, version).tags)
