"""SQL sources: incremental by watermark, a row threshold for the sensor, exactly once, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, func, select

from airgate.core.warehouse import raw_rows
from airgate.data import clean, collect_sql
from tests.helpers import REPO_ROOT
from tests.unit.orchestration.test_dags import _subprocess_json

pytestmark = pytest.mark.data
ROOT = REPO_ROOT


@pytest.fixture
def sql_spec(spec):  # type: ignore[no-untyped-def]
    src = spec.source.model_copy(
        update={
            "kind": "sql",
            "conn_id": "app_db",
            "table": "answers",
            "watermark_column": "ts",
            "min_new_rows": 500,
        }
    )
    return spec.model_copy(update={"source": src})


@pytest.fixture
def app_db(engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The app's own database: SQLite next to the SQLite warehouse, the same PostgreSQL DB next to PostgreSQL."""
    source = create_engine(f"sqlite:///{tmp_path / 'app.db'}") if engine.dialect.name == "sqlite" else engine
    md = MetaData()
    Table(
        "answers",
        md,
        Column("event_id", String(64), primary_key=True),
        Column("student_id", String(64)),
        Column("item_id", String(64)),
        Column("skill_id", String(64)),
        Column("ts", DateTime(timezone=True)),
        Column("response_time_ms", Integer),
        Column("answer", String(8)),
        Column("correct", Integer),
    )
    md.drop_all(source)
    md.create_all(source)
    yield source
    md.drop_all(source)


def _append(source, events: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    df = events.copy()
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df["correct"] = df["correct"].astype("object").where(df["correct"].notna(), None)
    with source.begin() as conn:
        conn.execute(Table("answers", MetaData(), autoload_with=source).insert(), df.to_dict("records"))


def test_incremental_reads_with_a_threshold_and_no_duplicates(engine, app_db, sql_spec, small_sim) -> None:  # type: ignore[no-untyped-def]
    events = small_sim.batch(0).events.sort_values("ts")
    assert collect_sql.count_new_rows(engine, app_db, sql_spec) == 0
    _append(app_db, events.iloc[:300])
    assert collect_sql.count_new_rows(engine, app_db, sql_spec) == 300  # below min_new_rows: the sensor waits
    _append(app_db, events.iloc[300:2000])
    first = collect_sql.ingest_new_rows(engine, app_db, sql_spec)
    assert first.status == "ingested" and first.rows == 2000
    assert collect_sql.count_new_rows(engine, app_db, sql_spec) == 0
    assert collect_sql.ingest_new_rows(engine, app_db, sql_spec).status == "nothing_new"  # a retry or re-run
    _append(app_db, events.iloc[2000:])
    second = collect_sql.ingest_new_rows(engine, app_db, sql_spec)
    assert second.rows == len(events) - 2000 and second.watermark_from == first.watermark_to
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(raw_rows)).scalar_one() == len(events)
    result = clean.clean_pending(engine, sql_spec)
    assert sum(v.rows_in for v in result.versions) == len(events)
    assert sum(v.accepted for v in result.versions) > 0.9 * len(events)


def test_rows_sharing_the_watermark_are_never_split(engine, app_db, sql_spec, small_sim) -> None:  # type: ignore[no-untyped-def]
    events = small_sim.batch(0).events.head(10).copy()
    events["ts"] = "2026-09-01T10:00:00+00:00"  # ten rows, one timestamp
    _append(app_db, events.head(4))
    assert collect_sql.ingest_new_rows(engine, app_db, sql_spec).rows == 4
    # Rows that arrive later with the same (already passed) watermark are not re-read: watermarks must grow.
    _append(app_db, events.tail(6).assign(ts="2026-09-01T10:00:01+00:00"))
    assert collect_sql.ingest_new_rows(engine, app_db, sql_spec).rows == 6


@pytest.mark.dag_structure
def test_a_sql_spec_builds_a_row_threshold_sensor(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "include" / "specs" / "knowledge_tracing.yaml").read_text())
    doc.update(
        name="app_answers",
        source={
            "kind": "sql",
            "conn_id": "app_db",
            "table": "answers",
            "watermark_column": "ts",
            "min_new_rows": 1000,
        },
    )
    (tmp_path / "app_answers.yaml").write_text(yaml.safe_dump(doc))
    code = (
        "import json\nfrom airflow.dag_processing.dagbag import DagBag\nb = DagBag(dag_folder='dags')\n"
        "d = b.dags['app_answers__collect']\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()},"
        " 'tasks': [t.task_id for t in d.tasks], 'mode': d.get_task('wait_for_new_rows').mode}))"
    )
    got = _subprocess_json(code, AIRGATE_SPECS_DIR=str(tmp_path))
    assert got == {"errors": {}, "tasks": ["wait_for_new_rows", "ingest_rows"], "mode": "reschedule"}
