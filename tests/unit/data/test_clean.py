"""Cleaning, rule by rule: the true reason for every rejected row, the spec's roles and time zone, the database's
limits checked before the write, chunks that give the batch's result, and versions that never stop the line."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from airgate.core import audit, datasets
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import as_utc, bulk_insert, clean_events, quarantine, raw_rows
from airgate.data import clean, collect, feature_store

pytestmark = pytest.mark.data

HEADER = ["event_id", "student_id", "item_id", "skill_id", "ts", "response_time_ms", "answer", "correct"]


def ev(event_id: str, **over: str) -> dict[str, str]:
    """A valid raw row (the shipped catalog pairs i000 with k4), with some values replaced."""
    row = dict(
        zip(HEADER, [event_id, "s1", "i000", "k4", "2026-09-01T10:00:00Z", "5000", "A", "1"], strict=True)
    )
    return {**row, **over}


def raw_version(engine: Any, spec: ModelSpec, rows: list[dict[str, str]]) -> str:
    """A raw version as collect writes one (the rows' content as it arrived)."""
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    with engine.begin() as conn:
        vid = datasets.insert_version(
            conn,
            model=spec.name,
            kind="raw",
            digest=digest,
            parents=[],
            row_count=len(rows),
            schema={"columns": list(rows[0])},
            summary={},
            batch_id=f"batch-{digest[:8]}",
        )
        bulk_insert(
            conn, raw_rows, [{"version_id": vid, "row_num": i, "content": r} for i, r in enumerate(rows)]
        )
    return vid


def rejected(engine: Any, version_id: str) -> dict[str, tuple[str, str]]:
    with engine.connect() as conn:
        q = select(quarantine).where(quarantine.c.version_id == version_id).order_by(quarantine.c.row_num)
        return {r.content.get("event_id") or f"#{r.row_num}": (r.reason, r.detail) for r in conn.execute(q)}


def accepted(engine: Any, version_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        q = select(clean_events).where(clean_events.c.version_id == version_id)
        return {r.event_id: r for r in conn.execute(q)}


def with_rules(spec: ModelSpec, **rules: Any) -> ModelSpec:
    return spec.model_copy(update={"cleaning": spec.cleaning.model_copy(update=rules)})


def test_every_reason_code_with_its_detail(engine, spec, small_sim) -> None:  # type: ignore[no-untyped-def]
    strict = with_rules(spec, min_events_per_student=2)
    first = clean.clean_version(engine, strict, raw_version(engine, strict, [ev("old"), ev("old2")]))
    assert first.accepted == 2
    rows = [
        ev("ok1"),
        ev("ok2", correct=""),  # ungraded: accepted without a label
        ev("cut", _malformed="9 fields, header has 8"),
        ev("blob", _undecodable="answer"),
        ev("nul", answer="a\x00b"),
        ev("", student_id="s1"),
        ev("long", student_id="s" * 129),
        ev("bad_ts", ts="yesterday"),
        ev("week_ts", ts="2026-W35-2"),  # ISO week date: not a timestamp here, and never "in the future"
        ev("bad_month", ts="3000-13-45T00:00:00Z"),
        ev("bad_rt", response_time_ms="fast"),
        ev("huge_rt", response_time_ms="99999999999999999999"),
        ev("bad_label", correct="7"),
        ev("future", ts="2099-01-01T00:00:00Z"),
        ev("far_future", ts="2999-01-01T00:00:00Z"),
        ev("ancient", ts="1999-01-01T00:00:00Z"),
        ev("rapid", response_time_ms="200"),
        ev("unk_item", item_id="i999"),
        ev("unk_skill", skill_id="k9"),
        ev("mismatch", skill_id="k3"),
        ev("old"),
        ev("ok1", ts="2026-09-01T10:06:00Z"),
        ev("lonely", student_id="s9"),
    ]
    outcome = clean.clean_version(engine, strict, raw_version(engine, strict, rows))
    assert outcome.rows_in == len(rows) == outcome.accepted + outcome.quarantined
    assert set(accepted(engine, outcome.clean_version_id)) == {"ok1", "ok2"}
    before = f"ts before {spec.cleaning.earliest_ts}"
    assert rejected(engine, outcome.clean_version_id) == {
        "cut": ("malformed_row", "row does not match the header: 9 fields, header has 8"),
        "blob": ("bad_encoding", "answer is not valid UTF-8"),
        "nul": ("nul_byte", "answer contains a NUL byte"),
        "#5": ("missing_value", "event_id is empty"),
        "long": ("too_long", "student_id is longer than 128 characters: 129"),
        "bad_ts": ("bad_type", "ts is not an ISO-8601 timestamp"),
        "week_ts": ("bad_type", "ts is not an ISO-8601 timestamp"),
        "bad_month": ("bad_type", "ts is not an ISO-8601 timestamp"),
        "bad_rt": ("bad_type", "response_time_ms is not a whole number"),
        "huge_rt": ("out_of_range", "response_time_ms outside [0, 24h]"),
        "bad_label": ("bad_label", "correct must be 0, 1 or empty"),
        "future": ("ts_in_future", "ts is later than the batch's arrival"),
        "far_future": ("ts_in_future", "ts is later than the batch's arrival"),
        "ancient": ("ts_out_of_range", before),
        "rapid": ("rapid_guess", "response_time_ms under 1000"),
        "unk_item": ("unknown_item", "item_id is not in the item catalog"),
        "unk_skill": ("unknown_skill", "skill_id is not in the item catalog"),
        "mismatch": ("skill_mismatch", "skill_id differs from the catalog's skill for this item"),
        "old": ("duplicate_event_id", "event_id already in an earlier version"),
        "ok1": ("duplicate_event_id", "event_id repeated within the batch"),
        "lonely": ("too_few_events", "student_id has fewer than 2 clean events"),
    }
    assert outcome.reasons["bad_type"] == 4 and outcome.reasons["ts_in_future"] == 2


def test_a_duplicate_whose_first_copy_is_invalid_keeps_the_valid_copy(engine, spec, small_sim) -> None:  # type: ignore[no-untyped-def]
    rows = [
        ev("e1", ts="not a time"),
        ev("e1", ts="2026-09-01T11:00:00Z"),
        ev("e1", ts="2026-09-01T12:00:00Z"),
    ]
    outcome = clean.clean_version(engine, spec, raw_version(engine, spec, rows))
    kept = accepted(engine, outcome.clean_version_id)
    assert list(kept) == ["e1"] and as_utc(kept["e1"].ts) == datetime(2026, 9, 1, 11, tzinfo=UTC)
    with engine.connect() as conn:
        reasons = conn.execute(
            select(quarantine.c.row_num, quarantine.c.reason).order_by(quarantine.c.row_num)
        )
        assert reasons.all() == [(0, "bad_type"), (2, "duplicate_event_id")]


def test_nul_bytes_and_long_values_are_quarantined_on_both_databases(engine, spec, small_sim) -> None:  # type: ignore[no-untyped-def]
    rows = [
        ev("ok"),
        ev("n\x00ul"),
        ev("x" * 129),
        ev("long_item", item_id="i" * 200),
        ev("nul_ts", ts="2026\x00"),
    ]
    outcome = clean.clean_version(
        engine, spec, raw_version(engine, spec, rows)
    )  # PostgreSQL would have refused
    assert (outcome.accepted, outcome.reasons) == (1, {"nul_byte": 2, "too_long": 2})
    with engine.connect() as conn:
        stored = {r.row_num: r for r in conn.execute(select(quarantine))}
    assert stored[1].content["event_id"] == "n\x00ul"  # the row as it arrived, NUL included (json, not jsonb)
    assert stored[3].detail == "item_id is longer than 128 characters: 200"
    assert stored[4].detail == "ts contains a NUL byte"


def test_renamed_role_columns_are_read_like_the_defaults(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    names = {"event_id": "id", "student_id": "learner", "ts": "at", "correct": "is_right"}
    s = spec.data_schema
    columns = {names.get(c, c): t for c, t in s.columns.items()}
    renamed = spec.model_copy(
        update={
            "name": "kt_renamed",
            "data_schema": s.model_copy(
                update={
                    "key": "id",
                    "entity": "learner",
                    "time": "at",
                    "label": "is_right",
                    "columns": columns,
                }
            ),
        }
    )
    rows = [
        ev("a"),
        ev("b", correct=""),
        ev("a", ts="2026-09-01T11:00:00Z"),
        ev("c", ts="soon"),
        ev("", ts="x"),
    ]
    results = []
    for model_spec, header in ((spec, HEADER), (renamed, [names.get(c, c) for c in HEADER])):
        landing = tmp_path / model_spec.name
        landing.mkdir()
        lines = [",".join(header)] + [",".join(r[c] for c in HEADER) for r in rows]
        (landing / "batch.csv").write_text("\n".join(lines) + "\n")
        collect.ingest(engine, model_spec, landing)
        outcome = clean.clean_pending(engine, model_spec).versions[0]
        kept = accepted(engine, outcome.clean_version_id)
        results.append(
            (outcome.reasons, {k: (r.student_id, as_utc(r.ts), r.correct) for k, r in kept.items()})
        )
    assert results[0] == results[1]
    assert results[0][0] == {"duplicate_event_id": 1, "bad_type": 1, "missing_value": 1}
    assert set(results[0][1]) == {"a", "b"}
    all_details = [d for _, d in rejected(engine, outcome.clean_version_id).values()]  # the renamed run's
    assert {"id is empty", "id repeated within the batch", "at is not an ISO-8601 timestamp"} <= set(
        all_details
    )


@pytest.mark.parametrize(
    ("zone", "naive_utc"),
    [
        ("UTC", datetime(2026, 9, 1, 10, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 9, 1, 14, tzinfo=UTC)),
    ],
)
def test_naive_timestamps_are_read_in_the_spec_zone_value_by_value(
    engine, spec, small_sim, zone, naive_utc
) -> None:  # type: ignore[no-untyped-def]
    zoned = spec.model_copy(
        update={"data_schema": spec.data_schema.model_copy(update={"naive_timezone": zone})}
    )
    rows = [
        ev("plus2", ts="2026-09-01T10:00:00+02:00"),
        ev("zulu", ts="2026-09-01T10:00:00Z"),
        ev("naive", ts="2026-09-01T10:00:00"),
        ev("plus2_again", ts="2026-09-01 10:00:00.5+0200"),
        ev("naive_space", ts="2026-09-01 10:00:00"),
        ev("minus5", ts="2026-09-01T10:00:00-05:00"),
    ]
    outcome = clean.clean_version(engine, zoned, raw_version(engine, zoned, rows))
    got = {k: as_utc(r.ts) for k, r in accepted(engine, outcome.clean_version_id).items()}
    assert got == {
        "plus2": datetime(2026, 9, 1, 8, tzinfo=UTC),
        "zulu": datetime(2026, 9, 1, 10, tzinfo=UTC),
        "naive": naive_utc,
        "plus2_again": datetime(2026, 9, 1, 8, 0, 0, 500000, tzinfo=UTC),
        "naive_space": naive_utc,
        "minus5": datetime(2026, 9, 1, 15, tzinfo=UTC),
    }


def test_chunks_give_the_batchs_result(engine, spec, small_sim, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Duplicates across chunks and per-student counts over the whole batch: the same version, whatever the
    chunk size."""
    strict = with_rules(spec, min_events_per_student=3)
    rows = [ev(f"e{i % 7}", student_id=f"s{i % 3}", ts=f"2026-09-01T10:{i:02d}:00Z") for i in range(20)]
    rows += [ev("solo", student_id="s_one"), ev("bad", ts="?")]
    vid = raw_version(engine, strict, rows)
    whole = clean.clean_version(engine, strict, vid)
    with engine.begin() as conn:
        conn.execute(quarantine.delete())
        conn.execute(clean_events.delete())
        conn.execute(datasets.dataset_versions.delete().where(datasets.dataset_versions.c.kind == "clean"))
    monkeypatch.setattr(clean, "CHUNK_ROWS", 3)
    chunked = clean.clean_version(engine, strict, vid)
    assert chunked == whole
    assert whole.accepted == 3  # s0's first three; s1 and s2 keep two each, s_one one
    assert whole.reasons == {"bad_type": 1, "duplicate_event_id": 13, "too_few_events": 5}


def test_an_all_quarantined_batch_is_a_version_and_the_next_one_goes_on(
    engine, spec, small_sim, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    raw_version(engine, spec, [ev(f"r{i}", response_time_ms="10") for i in range(5)])
    raw_version(engine, spec, [ev(f"g{i}", student_id=f"s{i % 2}") for i in range(6)])
    result = clean.clean_pending(engine, spec)
    assert [(v.accepted, v.quarantined) for v in result.versions] == [(0, 5), (6, 0)]
    assert len(audit.events(engine, event_type="clean")) == 2
    assert clean.clean_pending(engine, spec).versions == []  # nothing left pending
    made = feature_store.materialize_versions(engine, spec, result.clean_version_ids, tmp_path / "runs")
    empty, good = (made[v] for v in result.clean_version_ids)
    assert empty["rows"] == 0 and good["rows"] == 6 and good["created"]
    assert feature_store.materialize(engine, spec, result.clean_version_ids[0], tmp_path / "runs").rows == 0


def test_a_raw_version_that_cannot_be_cleaned_does_not_block_the_next(engine, spec, small_sim) -> None:  # type: ignore[no-untyped-def]
    broken = raw_version(engine, spec, [ev("a"), ev("b")])
    with engine.begin() as conn:  # e.g. purged by retention before it was cleaned
        conn.execute(raw_rows.delete().where(raw_rows.c.version_id == broken, raw_rows.c.row_num == 1))
    good = raw_version(engine, spec, [ev("c")])
    result = clean.clean_pending(engine, spec)
    assert [v.raw_version_id for v in result.versions] == [good]
    assert [f.raw_version_id for f in result.failed] == [broken]
    assert "1 raw rows stored, 2 recorded" in result.failed[0].error
    failed = audit.events(engine, event_type="clean_failed")
    assert len(failed) == 1 and failed[0]["entity"] == {"raw_version_id": broken}
    assert clean.pending_raw_versions(engine, spec.name) == [broken]  # still pending: tried again next run


def test_contents_that_are_not_objects_of_strings_are_judged_row_by_row(engine, spec, small_sim) -> None:  # type: ignore[no-untyped-def]
    rows: list[Any] = [ev("typed", response_time_ms=5000, correct=None), ["not", "an", "object"], ev("fine")]  # type: ignore[arg-type]
    outcome = clean.clean_version(engine, spec, raw_version(engine, spec, rows))
    kept = accepted(engine, outcome.clean_version_id)
    assert set(kept) == {"typed", "fine"}
    assert (kept["typed"].response_time_ms, kept["typed"].correct) == (5000, None)
    with engine.connect() as conn:
        row = conn.execute(select(quarantine)).one()
    assert (row.row_num, row.reason, row.content) == (1, "malformed_row", ["not", "an", "object"])
    assert row.detail == "row does not match the header: the raw content is not a JSON object"


def test_gaps_in_the_row_numbers_are_not_rows(
    engine, spec, small_sim, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    vid = raw_version(engine, spec, [ev("a"), ev("b"), ev("c")])
    with engine.begin() as conn:  # numbered 0, 1, 10: a chunk of row numbers can be empty
        conn.execute(raw_rows.update().where(raw_rows.c.row_num == 2).values(row_num=10))
    monkeypatch.setattr(clean, "CHUNK_ROWS", 2)
    outcome = clean.clean_version(engine, spec, vid)
    assert (outcome.rows_in, outcome.accepted, outcome.quarantined) == (3, 3, 0)
