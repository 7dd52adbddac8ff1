"""Where things live at run time: the warehouse, MLflow, spec paths in storage, and this host's local folder.

Deploy-time settings, read by each process itself (a task, a callback, the triggerer, the plugin): nothing is
carried over from an earlier task in the same process, and nothing is guessed. Each comes from the deployment
only, in this order: an environment variable (``AIRGATE_WAREHOUSE_URL``, ``AIRGATE_MLFLOW_URI`` and
``AIRGATE_MLFLOW_ARTIFACTS``), then ``[airgate]`` in airflow.cfg (``warehouse_url``, ``mlflow_uri``,
``mlflow_artifacts``, or ``AIRFLOW__AIRGATE__*``), then the Airflow connections ``airgate_warehouse`` and
``airgate_mlflow`` from a deployment-owned secrets backend (``AIRFLOW_CONN_*``, the configured ``[secrets]
backend``). Never from Airflow's metadata database: any op user edits its connections (the UI, the REST API), and
one who repointed ``airgate_warehouse`` would show everyone an empty ledger and an audit log that "verifies". None
of them is a ``SettingMissing`` error naming the fix. Resolved inside tasks and in the plugin, never at DAG-parse
time; the Airflow import is lazy so the stage modules stay usable (and testable) without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
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


# Backends that read Airflow's metadata database, which any op user edits (the Connections page, the REST API):
# a deployment setting must never come from there, even when an operator names one as [secrets] backend.
_EDITABLE_BACKENDS = frozenset({"MetastoreBackend", "ExecutionAPISecretsBackend"})


def deployment_value(env: str, key: str) -> str | None:
    """A plain deployment setting: the environment variable ``env``, else ``[airgate] key`` in airflow.cfg (or
    ``AIRFLOW__AIRGATE__<KEY>``). Both are written by whoever deploys airgate; neither lives in the metadata
    database, so no Airflow user can change them from the UI or the REST API. ``None`` when neither is set."""
    value = os.environ.get(env, "").strip()
    if value:
        return value
    from airflow.configuration import conf

    configured = conf.get("airgate", key, fallback=None)
    return configured.strip() or None if configured else None


def _in_task() -> bool:
    """Whether this process runs a task under the Task SDK (its supervisor channel is set). Looked up without
    importing the task runner, which a plain script or the api-server never loads."""
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(runner, "SUPERVISOR_COMMS", None) is not None


@lru_cache(maxsize=1)
def _deployment_backends() -> tuple[Any, ...]:
    """The secrets backends an op user cannot write to, in Airflow's own order: the configured one (``[secrets]
    backend``; in a task ``[workers] secrets_backend`` when set, as Airflow picks it there), then the environment
    (``AIRFLOW_CONN_*``). Never the metastore nor the Execution API's connection lookup, which serve what op users
    edit. Built once per process, as Airflow builds its own list."""
    from airflow.configuration import get_custom_secret_backend
    from airflow.sdk import Connection
    from airflow.secrets.environment_variables import EnvironmentVariablesBackend

    backends: list[Any] = []
    custom = get_custom_secret_backend(worker_mode=_in_task())
    if custom is not None:
        if {c.__name__ for c in type(custom).__mro__} & _EDITABLE_BACKENDS:
            raise SettingMissing(
                f"the configured secrets backend {type(custom).__name__} reads Airflow's metadata database, which "
                "op users edit: airgate takes no settings from it; name a deployment-owned backend (Vault, a cloud "
                "secrets manager) or unset it"
            )
        backends.append(custom)
    backends.append(EnvironmentVariablesBackend())
    for backend in backends:
        backend._set_connection_class(Connection)
    return tuple(backends)


def deployment_connection(conn_id: str, setting: str) -> Any:
    """The Airflow connection ``conn_id`` from a deployment-owned backend only (``_deployment_backends``).

    For what is airgate's record of truth or its keys (the warehouse, MLflow, the pseudonym key): a connection of
    that name in Airflow's metadata database is ignored on purpose, since any op user could repoint it (at a forged
    ledger, an empty audit log, a registry of their own). A backend that fails is an error, never a silent step to
    the next one. ``setting`` names the other ways to set it, for the message.
    """
    for backend in _deployment_backends():
        try:
            conn = backend.get_connection(conn_id=conn_id)
        except Exception as exc:  # noqa: BLE001 - any backend failure: say which, do not guess on
            raise SettingMissing(
                f"the secrets backend {type(backend).__name__} failed to read the connection {conn_id}: {exc}"
            ) from exc
        if conn is not None:
            return conn
    raise SettingMissing(
        f"no {setting} and no deployment-owned Airflow connection {conn_id}: define it as the environment variable "
        f"AIRFLOW_CONN_{conn_id.upper()} on every Airflow component, or in the configured [secrets] backend. "
        f"A connection {conn_id} in Airflow's metadata database (the Connections page, the REST API) is ignored on "
        "purpose: op users can edit it"
    )


def _conn(conn_id: str, setting: str):  # type: ignore[no-untyped-def]
    """Any Airflow connection, from a task (Task SDK), the api-server, or a plain script (core secrets chain),
    the metadata database included: only for SQL *sources* (``spec.source.conn_id``), which are data airgate
    collects and checks, not its record of truth. Settings use ``deployment_connection``.

    The Task SDK asks the environment (``AIRFLOW_CONN_*``) and any secrets backend first, then the Execution API.
    Executor callbacks (a missed deadline) get a workload-scoped token that the API refuses connections, so there
    only the environment and secrets backends answer.
    """
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSecretsBackendAccessDenied

    fix = (
        f"define the Airflow connection {conn_id} (as AIRFLOW_CONN_{conn_id.upper()} or in a secrets backend)"
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
        raise SettingMissing(f"no {setting}: {fix}") from exc


def warehouse_url() -> str:
    """``AIRGATE_WAREHOUSE_URL`` (a SQLAlchemy URL), else ``[airgate] warehouse_url``, else the deployment-owned
    Airflow connection ``airgate_warehouse`` (``deployment_connection``)."""
    configured = deployment_value("AIRGATE_WAREHOUSE_URL", "warehouse_url")
    if configured:
        return configured
    c = deployment_connection(WAREHOUSE_CONN_ID, "AIRGATE_WAREHOUSE_URL, no [airgate] warehouse_url")
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
    """An engine for a SQL source, from any Airflow connection, the metadata database's included (read only;
    never migrated). A source is data that airgate collects, fingerprints and checks, not its record of truth, so
    an ordinary connection is enough; the warehouse and MLflow are not resolved this way."""
    c = _conn(conn_id, f"the Airflow connection {conn_id} named by the spec's source.conn_id")
    return make_engine(
        url_from_connection(c.conn_type, c.host or "", c.login, c.password, c.port, c.schema, c.extra_dejson)
    )


def _mlflow_from_connection() -> MlflowConfig:
    extra = deployment_connection(MLFLOW_CONN_ID, "AIRGATE_MLFLOW_URI, no [airgate] mlflow_uri").extra_dejson
    missing = [k for k in ("tracking_uri", "artifact_root") if not extra.get(k)]
    if missing:
        raise SettingMissing(
            f"the Airflow connection {MLFLOW_CONN_ID} has no {' and no '.join(missing)} in "
            "its extra: set both, or set AIRGATE_MLFLOW_URI and AIRGATE_MLFLOW_ARTIFACTS"
        )
    return MlflowConfig(str(extra["tracking_uri"]), str(extra["artifact_root"]))


def mlflow_config() -> MlflowConfig:
    """Where MLflow tracks and registers: ``AIRGATE_MLFLOW_URI`` and ``AIRGATE_MLFLOW_ARTIFACTS`` (or ``[airgate]
    mlflow_uri`` and ``mlflow_artifacts``), else the deployment-owned Airflow connection ``airgate_mlflow`` (extra:
    ``tracking_uri``, ``artifact_root``). Nothing is guessed, and half a setting is an error, not a fallback.

    Resolving it also points this process's MLflow at it (``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``), so a
    ``models:/`` or ``runs:/`` URI loaded anywhere later in the task resolves against the same server, never
    against MLflow's own default (``./mlflow.db`` in the worker's working directory).
    """
    uri = deployment_value("AIRGATE_MLFLOW_URI", "mlflow_uri")
    artifacts = deployment_value("AIRGATE_MLFLOW_ARTIFACTS", "mlflow_artifacts")
    if uri and not artifacts:
        raise SettingMissing(
            "AIRGATE_MLFLOW_URI is set but AIRGATE_MLFLOW_ARTIFACTS is not: set it (or [airgate] "
            "mlflow_artifacts) to the artifact root new experiments use (a folder, file:// or s3:// URI)"
        )
    if artifacts and not uri:
        raise SettingMissing(
            "AIRGATE_MLFLOW_ARTIFACTS is set but AIRGATE_MLFLOW_URI is not: set it (or [airgate] mlflow_uri) "
            "to the tracking server or database"
        )
    cfg = MlflowConfig(uri, artifacts) if uri and artifacts else _mlflow_from_connection()
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


AUDIT_KEY_ENV = "AIRGATE_AUDIT_KEY"
MIN_AUDIT_KEY = 16


def audit_key() -> bytes:
    """The secret the audit chain and its anchors are MACed with (``airgate.core.audit``).

    ``AIRGATE_AUDIT_KEY``, else ``[airgate] audit_key`` in Airflow's configuration (so a secrets backend or
    ``AIRFLOW__AIRGATE__AUDIT_KEY`` can hold it). It must live outside the warehouse: whoever can write the
    warehouse but not read this key cannot rewrite the log undetected. Read on every call, never cached.
    """
    key = deployment_value(AUDIT_KEY_ENV, "audit_key") or ""
    if len(key) < MIN_AUDIT_KEY:
        state = "is too short" if key else "is not set"
        raise SettingMissing(
            f"the audit key {state}: set {AUDIT_KEY_ENV} (or [airgate] audit_key in the Airflow configuration) "
            f"to a secret of at least {MIN_AUDIT_KEY} characters, the same in every Airflow component"
        )
    return key.encode("utf-8")
