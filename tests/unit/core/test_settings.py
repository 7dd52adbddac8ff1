"""Where things live: every process reads its settings itself, and a missing one is an error that names the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airgate.core import settings
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def test_a_missing_warehouse_names_both_ways_to_set_it(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRGATE_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_AIRGATE_WAREHOUSE", raising=False)
    with pytest.raises(settings.SettingMissing, match="AIRGATE_WAREHOUSE_URL.*airgate_warehouse"):
        settings.warehouse_url()


def test_mlflow_is_never_guessed(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AIRGATE_MLFLOW", raising=False)
    monkeypatch.delenv("AIRGATE_MLFLOW_URI", raising=False)
    with pytest.raises(settings.SettingMissing, match="AIRGATE_MLFLOW_URI"):
        settings.mlflow_config()
    monkeypatch.setenv("AIRGATE_MLFLOW_URI", "sqlite:////tmp/x/mlflow.db")
    with pytest.raises(settings.SettingMissing, match="AIRGATE_MLFLOW_ARTIFACTS"):
        settings.mlflow_config()
    monkeypatch.delenv("AIRGATE_MLFLOW_URI")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRGATE_MLFLOW",
        json.dumps({"conn_type": "generic", "extra": {"tracking_uri": "sqlite:///m.db"}}),
    )
    with pytest.raises(settings.SettingMissing, match="no artifact_root"):
        settings.mlflow_config()


def test_resolving_mlflow_points_the_whole_task_process_at_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What a fresh task process needs: a models:/ URI loaded later resolves against airgate's MLflow, not
    ./mlflow.db in the worker's working directory (the train DAG failed that way under a real executor)."""
    monkeypatch.setenv("AIRGATE_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("AIRGATE_MLFLOW_ARTIFACTS", str(tmp_path / "art"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = settings.mlflow_config()
    assert os.environ["MLFLOW_TRACKING_URI"] == os.environ["MLFLOW_REGISTRY_URI"] == cfg.tracking_uri


_FRESH_PROCESS = """
import sys
from airgate.core import registry
from airgate.model import predictors
cfg = registry.MlflowConfig(sys.argv[1], sys.argv[2])
p = predictors.load(cfg, "lightgbm", sys.argv[3])
print("LOADED", type(p).__name__)
"""


def test_a_logged_model_loads_in_a_fresh_process_from_another_directory(tmp_path: Path) -> None:
    import lightgbm as lgb
    import mlflow
    import numpy as np

    from airgate.core import registry

    cfg = registry.MlflowConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "art"))
    registry.client(cfg)
    exp = registry.experiment_id(cfg, "m")
    x = np.random.default_rng(0).random((50, 2))
    booster = lgb.train(
        {"objective": "binary", "verbose": -1}, lgb.Dataset(x, (x[:, 0] > 0.5).astype(int)), 3
    )
    with mlflow.start_run(experiment_id=exp):
        uri = mlflow.lightgbm.log_model(booster, name="model").model_uri
    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLFLOW_TRACKING") and k != "MLFLOW_REGISTRY_URI"
    }
    out = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, cfg.tracking_uri, cfg.artifact_root, uri],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "LOADED LightGBMPredictor" in out.stdout, out.stderr[-3000:]
    assert not (elsewhere / "mlflow.db").exists()


def _load_settings(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "load_settings.py"), str(path)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_settings_file_variables_are_expanded_once_lists_included_and_an_unset_one_is_an_error(
    airflow_db: Path, tmp_path: Path
) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import load_settings
    finally:
        sys.path.pop(0)
    os.environ["AIRGATE_T_BUCKET"] = "s3://b"
    try:
        got = load_settings._expand(
            {"conn_extra": {"paths": ["${AIRGATE_T_BUCKET}/a", "$AIRGATE_T_BUCKET/b"]}}, "f.yaml"
        )
        assert got == {"conn_extra": {"paths": ["s3://b/a", "s3://b/b"]}}
    finally:
        del os.environ["AIRGATE_T_BUCKET"]
    bad = tmp_path / "settings.yaml"
    bad.write_text(
        "airflow:\n  variables:\n    - variable_name: x\n      variable_value: ${AIRGATE_T_UNSET}/y\n"
    )
    out = _load_settings(bad, {})
    assert out.returncode != 0
    assert "variables[0].variable_value: ${AIRGATE_T_UNSET} is not set" in out.stderr
