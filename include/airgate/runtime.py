"""Where things live at run time: the warehouse (from the Airflow connection), MLflow, and local folders.

Resolved inside tasks and in the plugin, never at DAG-parse time. The Airflow import is lazy so the stage
modules stay usable (and testable) without Airflow.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from airgate.registry import MlflowConfig
from airgate.warehouse import make_engine, url_from_connection

WAREHOUSE_CONN_ID = "airgate_warehouse"
MLFLOW_CONN_ID = "airgate_mlflow"
REPO_ROOT = Path(__file__).resolve().parents[2]


def airgate_home() -> Path:
    return Path(os.environ.get("AIRGATE_HOME", REPO_ROOT / ".airgate")).resolve()


def resolve_path(path: str) -> Path:
    p = Path(os.path.expandvars(path))
    return p if p.is_absolute() else airgate_home() / p


def resolve_location(location: str) -> Any:
    """A landing location: object storage URIs (s3://, gs://, file://, ...) through Airflow's ObjectStoragePath,
    plain paths as local folders (relative ones under $AIRGATE_HOME)."""
    expanded = os.path.expandvars(location)
    if "://" in expanded:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(expanded)
    return resolve_path(expanded)


def _conn(conn_id: str):  # type: ignore[no-untyped-def]
    """The Airflow connection, from a task (Task SDK), the api-server, or a plain script (core secrets chain)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        # Outside a task the SDK may not consult the metadata database; core's lookup does (and is allowed).
        from airflow.models.connection import Connection as CoreConnection

        return CoreConnection.get_connection_from_secrets(conn_id)


def warehouse_url() -> str:
    override = os.environ.get("AIRGATE_WAREHOUSE_URL")
    if override:
        return override
    c = _conn(WAREHOUSE_CONN_ID)
    return url_from_connection(c.conn_type, os.path.expandvars(c.host or ""), c.login, c.password, c.port,
                               c.schema, c.extra_dejson)


_ENGINE_LOCK = threading.Lock()


@lru_cache(maxsize=8)
def _engine_for_locked(url: str) -> Engine:
    from airgate import migrations

    engine = make_engine(url)
    migrations.upgrade(engine)
    return engine


def _engine_for(url: str) -> Engine:
    """One engine per process and URL, brought to the newest schema once (a no-op when already there).

    The api-server answers a page's parallel calls on threads; Alembic's module state is not thread-safe, so the
    first upgrade must not run twice at once (lru_cache alone does not stop two threads computing the same key).
    """
    with _ENGINE_LOCK:
        return _engine_for_locked(url)


def warehouse_engine() -> Engine:
    return _engine_for(warehouse_url())


def source_engine(conn_id: str) -> Engine:
    """An engine for a SQL source, from any Airflow connection (read only; never migrated)."""
    c = _conn(conn_id)
    return make_engine(url_from_connection(c.conn_type, os.path.expandvars(c.host or ""), c.login, c.password,
                                           c.port, c.schema, c.extra_dejson))


def mlflow_config() -> MlflowConfig:
    if os.environ.get("AIRGATE_MLFLOW_URI"):
        return MlflowConfig(os.environ["AIRGATE_MLFLOW_URI"],
                            os.environ.get("AIRGATE_MLFLOW_ARTIFACTS", str(airgate_home() / "mlartifacts")))
    try:
        c = _conn(MLFLOW_CONN_ID)
    except Exception:  # noqa: BLE001 - no connection defined: the embedded default
        return MlflowConfig.under(airgate_home())
    extra = c.extra_dejson
    return MlflowConfig(os.path.expandvars(extra.get("tracking_uri", "")) or MlflowConfig.under(airgate_home()).tracking_uri,
                        os.path.expandvars(extra.get("artifact_root", "")) or str(airgate_home() / "mlartifacts"))


def runs_dir() -> str:
    return str(airgate_home() / "runs")


@dataclass(frozen=True)
class CodeVersion:
    commit: str
    dirty: bool

    def __str__(self) -> str:
        return self.commit + ("+dirty" if self.dirty else "")


@lru_cache(maxsize=1)
def code_version() -> str:
    if os.environ.get("AIRGATE_CODE_VERSION"):
        return os.environ["AIRGATE_CODE_VERSION"]
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5).stdout.strip())
        return str(CodeVersion(commit, dirty))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
