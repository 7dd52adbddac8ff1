"""Where things live: every process reads its settings itself, and a missing one is an error that names the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from airflow.secrets import BaseSecretsBackend
from airflow.secrets.metastore import MetastoreBackend

from airgate.core import settings
from airgate.core.registry import MlflowConfig
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


# ------------------------------------------------------------------ deployment-owned settings only (issue 15)

WH_CONN = "AIRFLOW_CONN_AIRGATE_WAREHOUSE"


class DeploymentVault(BaseSecretsBackend):
    """A stand-in for Vault or a cloud secrets manager: what only the deployment writes."""

    values: ClassVar[dict[str, str]] = {}
    fail = False

    def get_conn_value(self, conn_id: str, team_name: str | None = None) -> str | None:
        if self.fail:
            raise ConnectionError("vault sealed")
        return self.values.get(conn_id)


class MetastoreAsBackend(MetastoreBackend):
    """An operator naming the metadata database as [secrets] backend, on purpose or not."""


@pytest.fixture
def deployment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No airgate setting anywhere; each test adds what its deployment has. The backend list is rebuilt around it."""
    for name in (
        "AIRGATE_WAREHOUSE_URL",
        "AIRGATE_MLFLOW_URI",
        "AIRGATE_MLFLOW_ARTIFACTS",
        WH_CONN,
        "AIRFLOW_CONN_AIRGATE_MLFLOW",
        "AIRFLOW_CONN_AIRGATE_PSEUDONYM_KEY",
        "AIRFLOW__AIRGATE__WAREHOUSE_URL",
        "AIRFLOW__AIRGATE__MLFLOW_URI",
        "AIRFLOW__AIRGATE__MLFLOW_ARTIFACTS",
        "AIRFLOW__SECRETS__BACKEND",
    ):
        monkeypatch.delenv(name, raising=False)
    DeploymentVault.values, DeploymentVault.fail = {}, False
    _rebuild_backends()
    yield monkeypatch
    monkeypatch.undo()
    _rebuild_backends()


def _rebuild_backends() -> None:
    """Each process builds its backend list once; a test that changes [secrets] backend needs a fresh one."""
    settings._deployment_backends.cache_clear()


@pytest.fixture
def metastore(airflow_db: Path) -> Iterator[Callable[..., None]]:
    """Connections as an op user leaves them in Airflow's metadata database (the UI, the REST API)."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    made: list[str] = []

    def add(conn_id: str, **fields: Any) -> None:
        with create_session() as session:
            session.add(Connection(conn_id=conn_id, **fields))
        made.append(conn_id)

    yield add
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id.in_(made)).delete()


def _conn_json(**fields: Any) -> str:
    return json.dumps(fields)


def test_settings_only_in_the_metadata_database_are_refused_saying_why(
    deployment: pytest.MonkeyPatch, metastore: Callable[..., None], spec: Any
) -> None:
    from airgate.data.privacy import Pseudonymizer

    metastore("airgate_warehouse", conn_type="sqlite", host="/tmp/forged.db")
    metastore("airgate_mlflow", conn_type="generic", extra=_conn_json(tracking_uri="x", artifact_root="y"))
    metastore("airgate_pseudonym_key", conn_type="generic", password="a key the op user knows")
    why = "ignored on purpose: op users can edit it"
    with pytest.raises(settings.SettingMissing, match=f"AIRFLOW_CONN_AIRGATE_WAREHOUSE.*{why}"):
        settings.warehouse_url()
    with pytest.raises(
        settings.SettingMissing, match=f"AIRGATE_MLFLOW_URI.*AIRFLOW_CONN_AIRGATE_MLFLOW.*{why}"
    ):
        settings.mlflow_config()
    private = spec.model_copy(
        update={"privacy": spec.privacy.model_copy(update={"pseudonymize": ["item_id"]})}
    )
    with pytest.raises(settings.SettingMissing, match=f"airgate_pseudonym_key.*{why}"):
        Pseudonymizer.from_spec(private)
    # A SQL source is data, not the record of truth: an ordinary connection still serves it.
    metastore("airgate_test_source", conn_type="sqlite", host="/tmp/source.db")
    assert str(settings.source_engine("airgate_test_source").url) == "sqlite:////tmp/source.db"


def test_the_warehouse_comes_from_env_then_airflow_cfg_then_a_deployment_connection(
    deployment: pytest.MonkeyPatch, metastore: Callable[..., None]
) -> None:
    from airflow.configuration import conf

    metastore("airgate_warehouse", conn_type="sqlite", host="/tmp/forged.db")
    deployment.setenv(WH_CONN, _conn_json(conn_type="sqlite", host="/srv/conn.db"))
    assert settings.warehouse_url() == "sqlite:////srv/conn.db"  # the environment's, never the metastore's
    conf.add_section("airgate")  # as an [airgate] section in airflow.cfg reads
    conf.set("airgate", "warehouse_url", "sqlite:////srv/cfg.db")
    try:
        assert settings.warehouse_url() == "sqlite:////srv/cfg.db"
        deployment.setenv("AIRFLOW__AIRGATE__WAREHOUSE_URL", "sqlite:////srv/cfg-env.db")
        assert settings.warehouse_url() == "sqlite:////srv/cfg-env.db"
        deployment.setenv("AIRGATE_WAREHOUSE_URL", "sqlite:////srv/env.db")
        assert settings.warehouse_url() == "sqlite:////srv/env.db"
    finally:
        conf.remove_section("airgate")


def test_mlflow_comes_from_env_or_airflow_cfg_or_a_deployment_connection_and_half_is_an_error(
    deployment: pytest.MonkeyPatch, metastore: Callable[..., None]
) -> None:
    metastore(
        "airgate_mlflow", conn_type="generic", extra=_conn_json(tracking_uri="forged", artifact_root="f")
    )
    deployment.setenv(
        "AIRFLOW_CONN_AIRGATE_MLFLOW",
        _conn_json(conn_type="generic", extra={"tracking_uri": "sqlite:///c.db", "artifact_root": "/c"}),
    )
    assert settings.mlflow_config() == MlflowConfig("sqlite:///c.db", "/c")
    deployment.setenv("AIRFLOW__AIRGATE__MLFLOW_URI", "http://mlflow:5000")
    with pytest.raises(settings.SettingMissing, match="AIRGATE_MLFLOW_ARTIFACTS is not"):
        settings.mlflow_config()  # half a setting never falls back to the connection
    deployment.setenv("AIRFLOW__AIRGATE__MLFLOW_ARTIFACTS", "s3://art")
    assert settings.mlflow_config() == MlflowConfig("http://mlflow:5000", "s3://art")
    deployment.setenv("AIRGATE_MLFLOW_URI", "sqlite:///env.db")
    deployment.setenv("AIRGATE_MLFLOW_ARTIFACTS", "/env-art")
    assert settings.mlflow_config() == MlflowConfig("sqlite:///env.db", "/env-art")
    deployment.delenv("AIRGATE_MLFLOW_URI")
    deployment.delenv("AIRFLOW__AIRGATE__MLFLOW_URI")
    with pytest.raises(settings.SettingMissing, match="AIRGATE_MLFLOW_URI is not"):
        settings.mlflow_config()


def test_a_configured_secrets_backend_answers_first_and_its_failure_is_no_silent_fallback(
    deployment: pytest.MonkeyPatch,
) -> None:
    deployment.setenv("AIRFLOW__SECRETS__BACKEND", f"{__name__}.DeploymentVault")
    deployment.setenv(WH_CONN, _conn_json(conn_type="sqlite", host="/srv/env.db"))
    DeploymentVault.values = {"airgate_warehouse": _conn_json(conn_type="sqlite", host="/srv/vault.db")}
    assert settings.warehouse_url() == "sqlite:////srv/vault.db"  # Airflow's own order: the backend, then env
    DeploymentVault.values = {}
    assert settings.warehouse_url() == "sqlite:////srv/env.db"
    DeploymentVault.fail = True
    with pytest.raises(settings.SettingMissing, match="DeploymentVault failed.*vault sealed"):
        settings.warehouse_url()


def test_the_metadata_database_named_as_secrets_backend_is_refused(deployment: pytest.MonkeyPatch) -> None:
    deployment.setenv("AIRFLOW__SECRETS__BACKEND", f"{__name__}.MetastoreAsBackend")
    deployment.setenv(WH_CONN, _conn_json(conn_type="sqlite", host="/srv/env.db"))
    with pytest.raises(settings.SettingMissing, match="MetastoreAsBackend reads Airflow's metadata database"):
        settings.warehouse_url()


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


def test_the_settings_file_refuses_airgates_own_connections(tmp_path: Path) -> None:
    """`make init` loads airflow_settings.yaml into the metadata database, where airgate would ignore them."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import load_settings
    finally:
        sys.path.pop(0)
    doc = {"connections": [{"conn_id": "airgate_warehouse", "conn_type": "sqlite", "conn_host": "/x.db"}]}
    with pytest.raises(
        load_settings.SettingsError, match="airgate_warehouse do not belong.*op users can edit"
    ):
        load_settings._refuse_deployment_connections(doc, tmp_path / "airflow_settings.yaml")
    load_settings._refuse_deployment_connections({"connections": [{"conn_id": "crm"}]}, tmp_path / "s.yaml")
