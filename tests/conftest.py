"""Shared fixtures. Airflow reads its configuration at import, so the environment is set before anything imports it.

Each test session gets its own AIRFLOW_HOME and AIRGATE_HOME under a temp folder, its own migrated Airflow
metadata DB, and a throwaway PostgreSQL database (dropped at the end) for the tests marked ``postgres``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SESSION_DIR = Path(tempfile.mkdtemp(prefix="airgate-test-"))
PG_ADMIN_URL = os.environ.get(
    "AIRGATE_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

os.environ.update(
    {
        "AIRFLOW_HOME": str(SESSION_DIR / "airflow"),
        "AIRGATE_HOME": str(SESSION_DIR / "airgate"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,trainer:op,approver:op,approver2:op,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(SESSION_DIR / "airflow" / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "GIT_PYTHON_REFRESH": "quiet",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "AIRGATE_AUDIT_KEY": "test-audit-key-" + uuid.uuid4().hex,
    }
)
for _setting in (
    "AIRGATE_WAREHOUSE_URL",
    "AIRGATE_MLFLOW_URI",
    "AIRGATE_MLFLOW_ARTIFACTS",
    "AIRGATE_STORAGE_URL",
    "AIRGATE_STORAGE_CONN_ID",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
):
    os.environ.pop(_setting, None)  # each test names its own stores
(SESSION_DIR / "airflow").mkdir(parents=True, exist_ok=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB for this session (dag.test() needs one)."""
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return Path(os.environ["AIRFLOW_HOME"])


# ------------------------------------------------------------------------------------------------ warehouses


def _migrated(url: str):  # type: ignore[no-untyped-def]
    from airgate.core import migrations
    from airgate.core.warehouse import make_engine

    engine = make_engine(url)
    migrations.upgrade(engine)
    return engine


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for the session, dropped at the end."""
    from sqlalchemy import create_engine, text

    name = f"airgate_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required for the postgres tests: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def _pg_engine(pg_url: str):  # type: ignore[no-untyped-def]
    engine = _migrated(pg_url)
    yield engine
    engine.dispose()


def _truncate_all(engine) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import inspect, text

    from airgate.core.warehouse import metadata

    # Optuna's studies live in the warehouse too; its schema-version tables stay, its studies go.
    optuna_tables = {
        "studies",
        "trials",
        "study_directions",
        "study_user_attributes",
        "study_system_attributes",
        "trial_params",
        "trial_values",
        "trial_user_attributes",
        "trial_system_attributes",
        "trial_intermediate_values",
        "trial_heartbeats",
    } & set(inspect(engine).get_table_names())
    names = ", ".join(
        [f'"{t.name}"' for t in metadata.sorted_tables] + [f'"{t}"' for t in sorted(optuna_tables)]
    )
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A migrated, empty warehouse: a fresh SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        eng = _migrated(f"sqlite:///{tmp_path / 'warehouse.db'}")
        yield eng
        eng.dispose()
    else:
        eng = request.getfixturevalue("_pg_engine")
        _truncate_all(eng)
        yield eng


@pytest.fixture
def sqlite_engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    eng = _migrated(f"sqlite:///{tmp_path / 'warehouse.db'}")
    yield eng
    eng.dispose()


@pytest.fixture
def spec():  # type: ignore[no-untyped-def]
    from tests.helpers import quick_spec

    return quick_spec()


@pytest.fixture(scope="session")
def _mlflow_template() -> Path:
    """An MLflow SQLite DB migrated once; each test gets a copy (creating one costs seconds)."""
    from airgate.core import registry

    cfg = registry.MlflowConfig.under(SESSION_DIR / "mlflow-template")
    (SESSION_DIR / "mlflow-template").mkdir(parents=True, exist_ok=True)
    registry.client(cfg).search_experiments()
    return SESSION_DIR / "mlflow-template" / "mlflow.db"


@pytest.fixture
def mlflow_cfg(tmp_path: Path, _mlflow_template: Path):  # type: ignore[no-untyped-def]
    from airgate.core.registry import MlflowConfig

    (tmp_path / "mlflow").mkdir()
    shutil.copy(_mlflow_template, tmp_path / "mlflow" / "mlflow.db")
    return MlflowConfig.under(tmp_path / "mlflow")


@pytest.fixture
def small_sim():  # type: ignore[no-untyped-def]
    """A small simulator; its item catalog is published where the spec's cleaning rules look for it."""
    from airgate.dev.simulator import SimConfig, Simulator, write_catalog

    sim = Simulator(SimConfig(students_per_batch=120, events_per_student=40))
    write_catalog(sim, Path(os.environ["AIRGATE_HOME"]) / "catalog" / "knowledge_tracing_items.csv")
    return sim


@pytest.fixture
def client(airflow_db, sqlite_engine, mlflow_cfg, monkeypatch):  # type: ignore[no-untyped-def]
    """The plugin app mounted as the api-server mounts it, authenticated by Airflow's own auth manager (real JWTs).
    It finds the warehouse and MLflow through the Airflow connections, as under the api-server."""
    from airflow.api_fastapi.app import init_auth_manager
    from fastapi.testclient import TestClient

    from airgate.web.app import mounted_app

    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRGATE_WAREHOUSE",
        json.dumps({"conn_type": "sqlite", "host": str(sqlite_engine.url.database)}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRGATE_MLFLOW",
        json.dumps(
            {
                "conn_type": "generic",
                "extra": {"tracking_uri": mlflow_cfg.tracking_uri, "artifact_root": mlflow_cfg.artifact_root},
            }
        ),
    )
    init_auth_manager()
    return TestClient(mounted_app(), base_url="http://localhost")


# What a test needs, read from the fixtures it requests (directly or through other fixtures): a marker that cannot
# disagree with the test. The layer marker comes from the folder: tests/unit/<layer>/ mirrors include/airgate/<layer>/.
NEEDS_BY_FIXTURE = {
    "engine": "database",
    "sqlite_engine": "database",
    "_pg_engine": "postgres",
    "pg_url": "postgres",
    "mlflow_cfg": "mlflow",
    "airflow_db": "airflow",
    "client": "airflow",
}
LAYERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its layer and its needs; then the whole-Airflow tests (marker ``scheduler``) first: under
    pytest-xdist their worker starts them at once, one after the other, while the other worker takes the rest; last,
    they would leave one core idle at the end."""
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(tests_dir).parts
        if parts[0] in LAYERS:
            item.add_marker(parts[0])
        for fixture in sorted(set(getattr(item, "fixturenames", ())) & NEEDS_BY_FIXTURE.keys()):
            item.add_marker(NEEDS_BY_FIXTURE[fixture])
    items.sort(key=lambda item: 0 if item.get_closest_marker("scheduler") else 1)
