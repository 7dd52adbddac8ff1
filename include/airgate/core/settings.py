"""Where things live at run time: the warehouse, MLflow, spec paths in storage, and this host's local folder.

Deploy-time settings, read by each process itself (a task, a callback, the triggerer, the plugin): nothing is
carried over from an earlier task in the same process, and nothing is guessed. ``AIRGATE_WAREHOUSE_URL`` and
``AIRGATE_MLFLOW_URI``/``AIRGATE_MLFLOW_ARTIFACTS`` first, else the Airflow connections ``airgate_warehouse`` and
``airgate_mlflow``; neither is a ``SettingMissing`` error naming both. Resolved inside tasks and in the plugin,
never at DAG-parse time; the Airflow import is lazy so the stage modules stay usable (and testable) without it.
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

from airgate.core.registry import MlflowConfig
from airgate.core.warehouse import make_engine, url_from_connection

WAREHOUSE_CONN_ID = "airgate_warehouse"
MLFLOW_CONN_ID = "airgate_mlflow"
REPO_ROOT = Path(__file__).resolve().parents[3]


def airgate_home() -> Path:
    """This process's local folder (``AIRGATE_HOME``, default ``.airgate`` in the repository), for what is
    per-process or per-host only: the embedded SQLite warehouse and MLflow, the notifier's log. Files that
    tasks share live in storage (``airgate.core.storage``), whose embedded default root is this folder."""
    return Path(os.environ.get("AIRGATE_HOME", REPO_ROOT / ".airgate")).resolve()


def resolve_path(path: str) -> Any:
    """A path the spec names (item catalog, roster, label folders) as a storage location (an ObjectStoragePath):
    a URI as it is, a plain absolute path as a local file, a relative path under the storage root
    (``AIRGATE_STORAGE_URL``, by default ``file://$AIRGATE_HOME``). See ``storage.location``."""
    from airgate.core import storage

    return storage.location(path)


def resolve_location(location: str) -> Any:
    """A landing location, read like every spec path (``resolve_path``): the sensor in the triggerer and the
    ingest on a worker find the same files only through the shared store."""
    from airgate.core import storage

    return storage.location(location)


class SettingMissing(RuntimeError):
    """A setting airgate needs is not configured (or not readable from this process); the message names the fix."""


def _conn(conn_id: str, setting: str):  # type: ignore[no-untyped-def]
    """The Airflow connection, from a task (Task SDK), the api-server, or a plain script (core secrets chain).

    The Task SDK asks the environment (``AIRFLOW_CONN_*``) and any secrets backend first, then the Execution API.
    Executor callbacks (a missed deadline) get a workload-scoped token that the API refuses connections, so there
    only the environment and secrets backends answer: deploy the setting there (``setting``) or as an
    ``AIRFLOW_CONN_*`` variable.
    """
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSecretsBackendAccessDenied

    fix = (
        f"set {setting} in the environment of every Airflow component, or define the Airflow connection "
        f"{conn_id} (as AIRFLOW_CONN_{conn_id.upper()} or in a secrets backend)"
    )
    try:
        return Connection.get(conn_id)
    except AirflowSecretsBackendAccessDenied as exc:
        raise SettingMissing(
            f"this process may not read the Airflow connection {conn_id} ({exc}): {fix}"
        ) from exc
    except AirflowNotFoundException:
        pass
    # Outside a task the SDK may not consult the metadata database; core's lookup does (and is allowed there).
    from airflow.models.connection import Connection as CoreConnection

    try:
        return CoreConnection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException as exc:
        raise SettingMissing(f"no {setting} and no Airflow connection {conn_id}: {fix}") from exc


def warehouse_url() -> str:
    """``AIRGATE_WAREHOUSE_URL`` (a SQLAlchemy URL), else the Airflow connection ``airgate_warehouse``."""
    override = os.environ.get("AIRGATE_WAREHOUSE_URL")
    if override:
        return override
    c = _conn(WAREHOUSE_CONN_ID, "AIRGATE_WAREHOUSE_URL")
    return url_from_connection(
        c.conn_type, c.host or "", c.login, c.password, c.port, c.schema, c.extra_dejson
    )


_ENGINE_LOCK = threading.Lock()


@lru_cache(maxsize=8)
def _engine_for_locked(url: str) -> Engine:
    from airgate.core import migrations

    engine = make_engine(url)
    migrations.check_current(engine)
    return engine


def _engine_for(url: str) -> Engine:
    """One engine per process and URL, checked once to be at the schema this code expects.

    Migrations run at deploy time (``python -m airgate.cli migrate``), never from a task: many tasks starting at
    once on a fresh database would race to create the version table. A stale schema fails here, naming the fix.
    The lock keeps the api-server's threads from building the same engine twice.
    """
    with _ENGINE_LOCK:
        return _engine_for_locked(url)


def warehouse_engine() -> Engine:
    return _engine_for(warehouse_url())


def source_engine(conn_id: str) -> Engine:
    """An engine for a SQL source, from any Airflow connection (read only; never migrated)."""
    c = _conn(conn_id, f"the Airflow connection {conn_id} named by the spec's source.conn_id")
    return make_engine(
        url_from_connection(c.conn_type, c.host or "", c.login, c.password, c.port, c.schema, c.extra_dejson)
    )


def mlflow_config() -> MlflowConfig:
    """Where MLflow tracks and registers: ``AIRGATE_MLFLOW_URI`` and ``AIRGATE_MLFLOW_ARTIFACTS``, else the
    Airflow connection ``airgate_mlflow`` (extra: ``tracking_uri``, ``artifact_root``). Nothing is guessed.

    Resolving it also points this process's MLflow at it (``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``), so a
    ``models:/`` or ``runs:/`` URI loaded anywhere later in the task resolves against the same server, never
    against MLflow's own default (``./mlflow.db`` in the worker's working directory).
    """
    uri = os.environ.get("AIRGATE_MLFLOW_URI")
    if uri:
        artifacts = os.environ.get("AIRGATE_MLFLOW_ARTIFACTS")
        if not artifacts:
            raise SettingMissing(
                "AIRGATE_MLFLOW_URI is set but AIRGATE_MLFLOW_ARTIFACTS is not: set it to the "
                "artifact root new experiments use (a folder, file:// or s3:// URI)"
            )
        cfg = MlflowConfig(uri, artifacts)
    else:
        extra = _conn(MLFLOW_CONN_ID, "AIRGATE_MLFLOW_URI").extra_dejson
        missing = [k for k in ("tracking_uri", "artifact_root") if not extra.get(k)]
        if missing:
            raise SettingMissing(
                f"the Airflow connection {MLFLOW_CONN_ID} has no {' and no '.join(missing)} in "
                "its extra: set both, or set AIRGATE_MLFLOW_URI and AIRGATE_MLFLOW_ARTIFACTS"
            )
        cfg = MlflowConfig(str(extra["tracking_uri"]), str(extra["artifact_root"]))
    os.environ["MLFLOW_TRACKING_URI"] = cfg.tracking_uri
    os.environ["MLFLOW_REGISTRY_URI"] = cfg.tracking_uri
    return cfg


def runs_dir() -> Any:
    """The run folders (splits, results, evidence, plans, the feature store) as a storage location (an
    ObjectStoragePath): ``runs`` under ``AIRGATE_STORAGE_URL``, so that every task, on any host, finds them."""
    from airgate.core import storage

    return storage.runs()


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
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
        )
        return str(CodeVersion(commit, dirty))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
