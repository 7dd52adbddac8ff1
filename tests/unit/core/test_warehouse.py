"""The warehouse schema: migrations build it, match the code, and upgrade in place without losing rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from airgate.core import migrations
from airgate.core.warehouse import (
    bulk_insert,
    clean_events,
    dataset_versions,
    make_engine,
    metadata,
    model_candidates,
    url_from_connection,
    utcnow,
)


def test_migrations_create_every_table(engine) -> None:  # type: ignore[no-untyped-def]
    names = set(inspect(engine).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= names


def _foreign(d: tuple) -> bool:  # type: ignore[type-arg]
    """Tables the warehouse holds but does not own: our version table and Optuna's (tuning studies)."""
    from optuna.storages._rdb.models import BaseModel

    owned_by_others = {"airgate_alembic_version", "alembic_version", *BaseModel.metadata.tables}
    if d[0] == "remove_table":
        return d[1].name in owned_by_others
    if d[0] == "remove_index":
        return d[1].table.name in owned_by_others
    return False


def test_migrations_match_the_declared_schema(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": "airgate_alembic_version"})
        diff = [d for d in compare_metadata(ctx, metadata) if not _foreign(d)]
    assert diff == [], f"tables in warehouse.py and the Alembic migrations differ: {diff}"


def test_upgrade_in_place_keeps_rows(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrations.upgrade(eng, "0001")
    with eng.begin() as conn:
        conn.execute(
            model_candidates.insert().values(
                model="m",
                training_run_id="tr-old",
                data_version="labeled-x",
                trained_by="t",
                metrics={"a": 1},
                status="trained",
                created_at=utcnow(),
            )
        )
    migrations.upgrade(eng)
    assert migrations.current_revision(eng) != "0001"
    with eng.connect() as conn:
        row = conn.execute(select(model_candidates)).one()._mapping
    assert row["training_run_id"] == "tr-old" and row["metrics"] == {"a": 1}
    assert row["code_version"] is None  # the column added by 0002 exists, empty for old rows


def test_bulk_insert_round_trips(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(
            dataset_versions.insert().values(
                version_id="clean-1",
                model="m",
                kind="clean",
                content_hash="h",
                parents=[],
                row_count=2,
                schema={},
                summary={},
                created_at=utcnow(),
            )
        )
        rows = [
            {
                "version_id": "clean-1",
                "model": "m",
                "event_id": f"e{i}",
                "student_id": "s",
                "item_id": "i",
                "skill_id": "k",
                "ts": utcnow(),
                "response_time_ms": 1000 + i,
                "answer": 'A, "quoted"\ttab',
                "correct": None if i else 1,
            }
            for i in range(2)
        ]
        assert bulk_insert(conn, clean_events, rows) == 2
    with engine.connect() as conn:
        got = conn.execute(select(clean_events).order_by(clean_events.c.event_id)).mappings().all()
        assert conn.execute(select(func.count()).select_from(clean_events)).scalar_one() == 2
    assert got[0]["answer"] == 'A, "quoted"\ttab' and got[0]["correct"] == 1 and got[1]["correct"] is None


def test_connection_fields_become_urls() -> None:
    assert url_from_connection("sqlite", "/x/w.db") == "sqlite:////x/w.db"
    assert (
        url_from_connection("postgres", "db", "u", "p@ss", 5433, "wh")
        == "postgresql+psycopg://u:p%40ss@db:5433/wh"
    )
    assert url_from_connection("mysql", extra={"sqlalchemy_url": "mysql://x"}) == "mysql://x"
    with pytest.raises(ValueError, match="conn_type"):
        url_from_connection("http", "h")


def test_tasks_never_migrate_and_a_stale_schema_names_the_fix(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from airgate.core import settings

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("AIRGATE_WAREHOUSE_URL", url)
    settings._engine_for_locked.cache_clear()
    with pytest.raises(migrations.SchemaNotCurrent, match=r"has no airgate schema.*airgate\.cli migrate"):
        settings.warehouse_engine()
    eng = make_engine(url)
    assert migrations.current_revision(eng) is None  # the check created nothing
    migrations.upgrade(eng, "0001")
    with pytest.raises(migrations.SchemaNotCurrent, match="is at revision 0001"):
        migrations.check_current(eng)
    migrations.upgrade(eng)
    assert migrations.current_revision(eng) == migrations.head_revision()
    assert settings.warehouse_engine().url.database == eng.url.database
    settings._engine_for_locked.cache_clear()


_MIGRATE = """
import sys
from airgate.core import migrations
from airgate.core.warehouse import make_engine
migrations.upgrade(make_engine(sys.argv[1]))
"""


@pytest.mark.postgres
def test_deploy_steps_started_at_once_on_a_fresh_postgres_take_turns(tmp_path: Path) -> None:
    """Four migrators on one empty database (several pods of a deploy): the advisory lock serialises them; without
    it they race creating the version table (UniqueViolation)."""
    import subprocess
    import sys
    import uuid

    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL

    name = f"airgate_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _MIGRATE, url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outs = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
        assert [rc for rc, _ in outs] == [0, 0, 0, 0], [err[-2000:] for _, err in outs]
        eng = make_engine(url)
        assert migrations.current_revision(eng) == migrations.head_revision()
        eng.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def test_the_deploy_command_migrates_the_warehouse_and_creates_mlflows_tables(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "AIRGATE_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'w.db'}",
        "AIRGATE_MLFLOW_URI": f"sqlite:///{tmp_path / 'm.db'}",
        "AIRGATE_MLFLOW_ARTIFACTS": str(tmp_path / "a"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "airgate.cli", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["from"], result["to"]) == (None, migrations.head_revision())
    from sqlalchemy import create_engine

    assert "experiments" in inspect(create_engine(env["AIRGATE_MLFLOW_URI"])).get_table_names()
    again = subprocess.run(
        [sys.executable, "-m", "airgate.cli", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert json.loads(again.stdout.strip().splitlines()[-1])["from"] == migrations.head_revision()
    del env["AIRGATE_MLFLOW_ARTIFACTS"]
    broken = subprocess.run(
        [sys.executable, "-m", "airgate.cli", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert broken.returncode != 0 and "AIRGATE_MLFLOW_ARTIFACTS" in broken.stderr
