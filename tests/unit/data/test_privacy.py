"""De-identification at ingest: keyed pseudonyms, never a default key, the same pseudonym on every path."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, select

from airgate.core import settings
from airgate.core.spec.sections import Privacy
from airgate.core.warehouse import raw_rows
from airgate.data import collect_sql
from airgate.data.privacy import Pseudonymizer, pseudonymize_roster, pseudonymized_columns

pytestmark = pytest.mark.data
KEY = b"a-long-random-secret-for-the-tests"


@pytest.fixture
def private_spec(spec):  # type: ignore[no-untyped-def]
    src = spec.source.model_copy(
        update={"kind": "sql", "conn_id": "app_db", "table": "answers", "watermark_column": "ts"}
    )
    return spec.model_copy(update={"source": src, "privacy": Privacy(pseudonymize=["item_id"])})


def test_a_pseudonym_is_keyed_stable_and_not_the_value() -> None:
    p = Pseudonymizer(KEY, ("student_id",))
    a = p.value("student-42")
    assert re.fullmatch(r"p_[0-9a-f]{32}", a) and a == p.value("student-42")
    assert a != p.value("student-43")
    assert a != Pseudonymizer(b"another key", ("student_id",)).value("student-42")  # the key matters
    assert p.value("") == ""  # a missing value stays visibly missing
    with pytest.raises(ValueError, match="must not be empty"):
        Pseudonymizer(b"", ("student_id",))


def test_tables_and_rows_get_the_same_pseudonyms() -> None:
    p = Pseudonymizer(KEY, ("student_id", "item_id"))
    rows = [
        {"event_id": "e1", "student_id": "s1", "item_id": "i1"},
        {"event_id": "e2", "student_id": "s2", "item_id": "i1"},
        {"event_id": "e3", "student_id": "s1", "item_id": ""},
    ]
    table = pa.Table.from_pylist(rows).set_column(2, "item_id", pa.array(["i1", "i1", None], pa.string()))
    got = p.apply_table(table).to_pylist()
    want = p.apply_rows(rows)
    assert (
        [r["student_id"] for r in got]
        == [r["student_id"] for r in want]
        == [p.value("s1"), p.value("s2"), p.value("s1")]
    )
    assert [r["item_id"] for r in got] == [p.value("i1"), p.value("i1"), None]  # a null stays null
    assert [r["event_id"] for r in got] == ["e1", "e2", "e3"]  # columns not named are untouched


def test_the_entity_column_is_always_pseudonymized(private_spec) -> None:  # type: ignore[no-untyped-def]
    assert set(pseudonymized_columns(private_spec)) == {"item_id", "student_id"}
    assert pseudonymized_columns(private_spec.model_copy(update={"privacy": Privacy()})) == ()


def test_a_missing_key_connection_is_an_error_naming_it(airflow_db: Path, private_spec, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("AIRFLOW_CONN_AIRGATE_PSEUDONYM_KEY", raising=False)
    with pytest.raises(settings.SettingMissing, match="airgate_pseudonym_key.*privacy.key_conn_id"):
        Pseudonymizer.from_spec(private_spec)
    monkeypatch.setenv("AIRFLOW_CONN_AIRGATE_PSEUDONYM_KEY", json.dumps({"conn_type": "generic"}))
    with pytest.raises(settings.SettingMissing, match="has no password"):
        Pseudonymizer.from_spec(private_spec)
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRGATE_PSEUDONYM_KEY", json.dumps({"conn_type": "generic", "password": "k"})
    )
    p = Pseudonymizer.from_spec(private_spec)
    assert p == Pseudonymizer(b"k", ("item_id", "student_id"))


def test_the_roster_is_joined_on_the_same_pseudonym(private_spec) -> None:  # type: ignore[no-untyped-def]
    p = Pseudonymizer(KEY, pseudonymized_columns(private_spec))
    roster = pd.DataFrame({"student_id": ["s1", "s2"], "cohort": ["a", "b"]})
    stored = pd.DataFrame(p.apply_rows([{"student_id": "s2", "item_id": "i9"}]))
    joined = stored.merge(pseudonymize_roster(roster, private_spec, p), on="student_id")
    assert joined["cohort"].tolist() == ["b"]
    off = private_spec.model_copy(update={"privacy": Privacy()})
    assert pseudonymize_roster(roster, off) is roster


def test_sql_ingest_stores_pseudonyms_only_and_still_reads_once(
    sqlite_engine, private_spec, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    source = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    md = MetaData()
    answers = Table(
        "answers",
        md,
        Column("event_id", String(64), primary_key=True),
        *(Column(c, String(64)) for c in ("student_id", "item_id", "skill_id", "answer")),
        Column("ts", DateTime(timezone=True)),
        Column("response_time_ms", Integer),
        Column("correct", Integer),
    )
    md.create_all(source)
    rows = [
        {"event_id": f"e{i}", "student_id": f"alice{i % 2}", "item_id": "i1", "skill_id": "k", "answer": "a",
         "ts": datetime.fromisoformat(f"2026-09-01T10:0{i}:00+00:00"), "response_time_ms": 900, "correct": 1}
        for i in range(4)
    ]  # fmt: skip
    with source.begin() as conn:
        conn.execute(answers.insert(), rows)
    p = Pseudonymizer(KEY, pseudonymized_columns(private_spec))
    assert collect_sql.ingest_new_rows(sqlite_engine, source, private_spec, pseudonymizer=p).rows == 4
    assert (
        collect_sql.ingest_new_rows(sqlite_engine, source, private_spec, pseudonymizer=p).status
        == "nothing_new"
    )
    with sqlite_engine.connect() as conn:
        stored = [c for (c,) in conn.execute(select(raw_rows.c.content))]
    assert {r["student_id"] for r in stored} == {p.value("alice0"), p.value("alice1")}
    assert {r["item_id"] for r in stored} == {p.value("i1")}
    assert "alice" not in json.dumps(stored)


def test_landing_files_are_stored_under_pseudonyms_only_and_clean_and_label_as_before(
    engine, spec, small_sim, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The file path: every id the spec names (and the entity) is a pseudonym in raw rows, quarantine and clean
    events; the rows accepted are the same as without privacy, so nothing downstream notices but the ids."""
    import shutil

    from airgate.core.warehouse import clean_events, quarantine
    from airgate.data import clean, collect
    from tests.helpers import land

    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRGATE_PSEUDONYM_KEY", json.dumps({"conn_type": "generic", "password": KEY.decode()})
    )
    landing = land(small_sim, tmp_path / "plain", range(1))
    first = next(landing.glob("*.csv")).read_text().splitlines()
    # a row with too many fields: quarantined as malformed, and its content holds no raw id either
    (landing / "malformed.csv").write_text(first[0] + "\n" + first[1].replace("e", "m", 1) + ",extra\n")
    private = spec.model_copy(update={"privacy": Privacy(pseudonymize=["item_id"])})
    raw_ids = {line.split(",")[1] for p in landing.glob("*.csv") for line in p.read_text().splitlines()[1:]}
    collect.ingest(engine, private, landing)
    cleaned = clean.clean_pending(engine, private)
    with engine.connect() as conn:
        stored = [
            json.loads(c) if isinstance(c, str) else c
            for c in conn.execute(select(raw_rows.c.content)).scalars()
        ]
        quarantined = [
            json.loads(c) if isinstance(c, str) else c
            for c in conn.execute(select(quarantine.c.content)).scalars()
        ]
        students = set(conn.execute(select(clean_events.c.student_id)).scalars())
        items = set(conn.execute(select(clean_events.c.item_id)).scalars())
    assert stored and all(r["student_id"].startswith("p_") and r["item_id"].startswith("p_") for r in stored)
    assert quarantined and all(r.get("student_id", "p_").startswith("p_") for r in quarantined)
    assert not students & raw_ids and all(s.startswith("p_") for s in students | items)
    pseudo = Pseudonymizer(KEY, ("item_id", "student_id"))
    assert {pseudo.value(s) for s in raw_ids} >= students  # the same pseudonym the roster join uses

    # Against the same file without privacy: the same rows are accepted and quarantined, for the same reasons.
    shutil.rmtree(landing / ".." / "oracle", ignore_errors=True)
    plain_spec = spec.model_copy(update={"name": "kt_plain"})
    collect.ingest(engine, plain_spec, landing)
    plain = clean.clean_pending(engine, plain_spec)
    assert [(v.accepted, v.quarantined, v.reasons) for v in plain.versions] == [
        (v.accepted, v.quarantined, v.reasons) for v in cleaned.versions
    ]
