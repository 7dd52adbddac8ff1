"""SQL sources: incremental by watermark, a row threshold for the sensor, exactly once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, func, select, text

from airgate.core import migrations
from airgate.core.tables import source_keys
from airgate.core.warehouse import audit_log, dataset_versions, make_engine, raw_rows, utcnow
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


# ------------------------------------------------------------------------------ late, backdated and NULL rows


def _rows(ids: range, ts: str | None) -> list[dict[str, object]]:
    when = None if ts is None else datetime.fromisoformat(ts)
    return [
        {
            "event_id": f"e{i}",
            "student_id": "s1",
            "item_id": "i1",
            "skill_id": "k1",
            "ts": when,
            "response_time_ms": 900,
            "answer": "a",
            "correct": 1,
        }
        for i in ids
    ]


def _insert(source, rows: list[dict[str, object]]) -> None:  # type: ignore[no-untyped-def]
    with source.begin() as conn:
        conn.execute(Table("answers", MetaData(), autoload_with=source).insert(), rows)


def _raw_event_ids(engine) -> list[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return sorted(c["event_id"] for (c,) in conn.execute(select(raw_rows.c.content)))


def test_a_backdated_row_within_the_lookback_arrives_exactly_once(engine, app_db, sql_spec) -> None:  # type: ignore[no-untyped-def]
    _insert(app_db, _rows(range(0, 5), "2026-09-01T10:00:00+00:00"))
    _insert(app_db, _rows(range(5, 10), "2026-09-01T11:00:00+00:00"))
    assert collect_sql.ingest_new_rows(engine, app_db, sql_spec).rows == 10
    _insert(app_db, _rows(range(10, 11), "2026-09-01T10:30:00+00:00"))  # below the stored 11:00, within 1 h
    _insert(app_db, _rows(range(11, 12), "2026-09-01T09:00:00+00:00"))  # outside the lookback: not read
    assert collect_sql.count_new_rows(engine, app_db, sql_spec) == 1
    late = collect_sql.ingest_new_rows(engine, app_db, sql_spec)
    assert (late.status, late.rows, late.behind_watermark) == ("ingested", 1, 1)
    assert late.watermark_to == late.watermark_from  # the watermark never moves back
    with engine.connect() as conn:
        summary = conn.execute(
            select(dataset_versions.c.summary).where(dataset_versions.c.version_id == late.raw_version_id)
        ).scalar_one()
        details = conn.execute(
            select(audit_log.c.details).order_by(audit_log.c.seq.desc()).limit(1)
        ).scalar_one()
    assert summary["rows_behind_watermark"] == 1 and details["rows_behind_watermark"] == 1
    assert collect_sql.ingest_new_rows(engine, app_db, sql_spec).status == "nothing_new"
    assert _raw_event_ids(engine) == sorted(f"e{i}" for i in range(11))


def test_the_overlap_never_duplicates_rows_across_reads(engine, app_db, sql_spec) -> None:  # type: ignore[no-untyped-def]
    for hour in range(6):  # each read re-scans the previous hour: the rows there were already delivered
        _insert(app_db, _rows(range(hour * 10, hour * 10 + 10), f"2026-09-01T{10 + hour:02d}:00:00+00:00"))
        got = collect_sql.ingest_new_rows(engine, app_db, sql_spec)
        assert (got.rows, got.behind_watermark) == (10, 0)
        assert collect_sql.count_new_rows(engine, app_db, sql_spec) == 0
    assert _raw_event_ids(engine) == sorted(f"e{i}" for i in range(60))
    with engine.connect() as conn:  # the key table holds the window only, not the history
        assert conn.execute(select(func.count()).select_from(source_keys)).scalar_one() == 20


def test_null_watermarks_are_read_once_and_never_stored_as_the_watermark(engine, app_db, sql_spec) -> None:  # type: ignore[no-untyped-def]
    _insert(app_db, _rows(range(0, 3), "2026-09-01T10:00:00+00:00"))
    _insert(app_db, _rows(range(3, 5), None))  # the newest value, in PostgreSQL's order, is NULL
    first = collect_sql.ingest_new_rows(engine, app_db, sql_spec)
    assert (first.rows, first.null_watermark) == (5, 2)
    stored = collect_sql.current_watermark(engine, sql_spec)
    assert stored is not None and stored != "None" and stored.startswith("2026-09-01")
    _insert(app_db, _rows(range(5, 6), None))
    _insert(app_db, _rows(range(6, 7), "2026-09-01T12:00:00+00:00"))
    second = collect_sql.ingest_new_rows(
        engine, app_db, sql_spec
    )  # the next poll works, the NULLs are not re-sent
    assert (second.rows, second.null_watermark) == (2, 1)
    assert collect_sql.ingest_new_rows(engine, app_db, sql_spec).status == "nothing_new"
    assert _raw_event_ids(engine) == sorted(f"e{i}" for i in range(7))


def test_only_null_watermarks_store_no_watermark_and_are_not_lost(engine, app_db, sql_spec) -> None:  # type: ignore[no-untyped-def]
    _insert(app_db, _rows(range(0, 2), None))
    assert collect_sql.ingest_new_rows(engine, app_db, sql_spec).rows == 2
    assert collect_sql.current_watermark(engine, sql_spec) is None
    assert collect_sql.count_new_rows(engine, app_db, sql_spec) == 0
    _insert(app_db, _rows(range(2, 3), "2026-09-01T10:00:00+00:00"))
    assert collect_sql.ingest_new_rows(engine, app_db, sql_spec).rows == 1
    assert _raw_event_ids(engine) == ["e0", "e1", "e2"]


def test_two_workers_reading_the_same_rows_write_once(engine, app_db, sql_spec, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _insert(app_db, _rows(range(0, 5), "2026-09-01T10:00:00+00:00"))
    barrier = threading.Barrier(2, timeout=30)
    plan = collect_sql._plan

    def both_read_first(*a, **kw):  # type: ignore[no-untyped-def]
        barrier.wait()  # both workers have read the same window before either writes
        return plan(*a, **kw)

    monkeypatch.setattr(collect_sql, "_plan", both_read_first)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: collect_sql.ingest_new_rows(engine, app_db, sql_spec), range(2)))
    assert sorted(r.status for r in results) == ["duplicate", "ingested"]
    assert _raw_event_ids(engine) == [f"e{i}" for i in range(5)]


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_a_row_committed_by_a_transaction_open_during_the_read_arrives_once(engine, app_db, sql_spec) -> None:  # type: ignore[no-untyped-def]
    _insert(app_db, _rows(range(0, 3), "2026-09-01T10:00:00+00:00"))
    table = Table("answers", MetaData(), autoload_with=app_db)
    late = _rows(range(3, 4), "2026-09-01T10:20:00+00:00")
    with app_db.connect() as writer:
        tx = writer.begin()
        writer.execute(table.insert(), late)  # open, with an earlier watermark than what the read will store
        _insert(app_db, _rows(range(4, 6), "2026-09-01T10:40:00+00:00"))
        assert collect_sql.ingest_new_rows(engine, app_db, sql_spec).rows == 5  # the open row is not visible
        tx.commit()
    got = collect_sql.ingest_new_rows(engine, app_db, sql_spec)
    assert (got.rows, got.behind_watermark) == (1, 1)
    assert collect_sql.ingest_new_rows(engine, app_db, sql_spec).status == "nothing_new"
    assert _raw_event_ids(engine) == [f"e{i}" for i in range(6)]


def test_a_watermark_stored_as_none_before_the_upgrade_is_recovered(tmp_path: Path, sql_spec) -> None:  # type: ignore[no-untyped-def]
    """Before 0011 a NULL newest watermark was stored as 'None' and every later poll failed."""
    eng = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrations.upgrade(eng, "0010")
    content = [{"event_id": "e1", "ts": "2026-09-01T10:00:00"}, {"event_id": "e2", "ts": ""}]
    with eng.begin() as conn:
        conn.execute(
            dataset_versions.insert().values(
                version_id="raw-legacy", model=sql_spec.name, kind="raw", content_hash="x", parents=[],
                row_count=2, schema={}, summary={}, created_at=utcnow(),
            )
        )  # fmt: skip
        conn.execute(
            raw_rows.insert(),
            [{"version_id": "raw-legacy", "row_num": i, "content": c} for i, c in enumerate(content)],
        )
        conn.execute(
            text(
                "INSERT INTO source_watermarks (model, source, watermark, raw_version_id, updated_at) "
                "VALUES (:m, 'app_db:answers', 'None', 'raw-legacy', '2026-09-01 10:05:00')"
            ),
            {"m": sql_spec.name},
        )
    migrations.upgrade(eng)
    source = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    md = MetaData()
    Table(
        "answers", md, Column("event_id", String(64), primary_key=True), Column("ts", DateTime(timezone=True))
    )
    md.create_all(source)
    with source.begin() as conn:
        conn.execute(
            md.tables["answers"].insert(),
            [
                {"event_id": "e1", "ts": datetime(2026, 9, 1, 10)},
                {"event_id": "e3", "ts": datetime(2026, 9, 1, 10, 30)},
            ],
        )
    got = collect_sql.ingest_new_rows(
        eng, source, sql_spec
    )  # reads on, from the recovered 10:00, not from 'None'
    assert (got.status, got.rows, got.watermark_from) == ("ingested", 1, "2026-09-01T10:00:00")
    assert collect_sql.current_watermark(eng, sql_spec) == "2026-09-01T10:30:00"
    assert collect_sql.ingest_new_rows(eng, source, sql_spec).status == "nothing_new"
