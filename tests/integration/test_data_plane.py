"""Collection, cleaning and labeling: nothing lost, nothing twice, every rejection explained."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from airgate.core import audit, datasets
from airgate.core.warehouse import clean_events, file_ledger, labels, quarantine, raw_rows
from airgate.data import clean, collect, labeling
from tests.helpers import land

pytestmark = pytest.mark.data

HEADER = "event_id,student_id,item_id,skill_id,ts,response_time_ms,answer,correct\n"


def _count(engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_rows_in_equal_accepted_plus_quarantined(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    landing = land(small_sim, tmp_path, range(2))
    ingested = collect.ingest(engine, spec, landing)
    assert len(ingested.raw_version_ids) == 2
    result = clean.clean_pending(engine, spec)
    for v in result.versions:
        raw = datasets.get(engine, v.raw_version_id)
        assert raw is not None and v.rows_in == raw.row_count == v.accepted + v.quarantined
        assert v.reasons.get("rapid_guess", 0) > 0  # the simulator's rapid guesses are caught
    assert _count(engine, clean_events) + _count(engine, quarantine) == _count(engine, raw_rows)


def test_parquet_batches_are_ingested_like_csv(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    landing = tmp_path / "landing"
    landing.mkdir()
    events = small_sim.batch(0).events
    events.to_parquet(landing / "batch.parquet")
    pq_spec = spec.model_copy(update={"source": spec.source.model_copy(update={"pattern": "*.parquet"})})
    result = collect.ingest(engine, pq_spec, landing)
    assert result.rows == len(events)
    outcome = clean.clean_pending(engine, pq_spec).versions[0]
    assert outcome.rows_in == len(events) == outcome.accepted + outcome.quarantined
    assert outcome.accepted > 0.9 * len(events)


def test_ingesting_and_cleaning_twice_adds_nothing(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    landing = land(small_sim, tmp_path, range(2))
    collect.ingest(engine, spec, landing)
    clean.clean_pending(engine, spec)
    before = (_count(engine, raw_rows), _count(engine, clean_events), _count(engine, quarantine))
    # the same files again, plus a byte-identical copy under a new name
    (landing / "copy_of_batch.csv").write_bytes((landing / "interactions_0000.csv").read_bytes())
    again = collect.ingest(engine, spec, landing)
    assert again.raw_version_ids == []
    assert [(Path(f.path).name, f.status) for f in again.files] == [("copy_of_batch.csv", "duplicate")]
    dup = audit.events(engine, event_type="duplicate_file")
    assert len(dup) == 1 and dup[0]["details"]["same_as"].endswith("interactions_0000.csv")
    assert collect.ingest(engine, spec, landing).files == []  # the copy is recorded: not even looked at again
    assert clean.clean_pending(engine, spec).versions == []
    assert (_count(engine, raw_rows), _count(engine, clean_events), _count(engine, quarantine)) == before


def test_a_retry_of_a_file_already_committed_is_a_no_op(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    landing = land(small_sim, tmp_path, range(1))
    f = collect.scan(landing, "*.csv")[0]
    first = collect.ingest_file(engine, spec, f, "airflow")
    second = collect.ingest_file(engine, spec, f, "airflow")  # e.g. the task was retried after its commit
    assert first.status == "ingested" and second.status == "duplicate"
    assert _count(engine, raw_rows) == first.rows


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (HEADER.encode(), "no rows"),
        (b"event_id,student_id\ne1,s1\n", "missing columns"),
        (HEADER.encode() + "e1,s1,i1,k1,2026-09-01T10:00:00Z,5000,A,1\n".encode("utf-16"), "not UTF-8"),
    ],
)
def test_bad_files_are_rejected_with_a_reason_and_good_ones_go_on(
    engine,
    spec,
    small_sim,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    content: bytes,
    reason: str,
) -> None:
    landing = land(small_sim, tmp_path, range(1))
    (landing / "bad.csv").write_bytes(content)
    result = collect.ingest(engine, spec, landing)
    status = {Path(f.path).name: f for f in result.files}
    assert status["interactions_0000.csv"].status == "ingested"
    assert status["bad.csv"].status == "rejected" and reason in (status["bad.csv"].error or "")
    events = audit.events(engine, event_type="ingest_rejected")
    assert len(events) == 1 and reason in events[0]["details"]["error"]
    with engine.connect() as conn:
        assert (
            conn.execute(select(file_ledger.c.status).where(file_ledger.c.path.like("%bad.csv"))).scalar()
            == "rejected"
        )


def test_corrupt_parquet_is_rejected(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    landing = tmp_path / "landing"
    landing.mkdir()
    small_sim.batch(0).events.to_parquet(landing / "good.parquet")
    data = (landing / "good.parquet").read_bytes()
    (landing / "bad.parquet").write_bytes(data[: len(data) // 2])  # cut off mid-write
    pq_spec = spec.model_copy(update={"source": spec.source.model_copy(update={"pattern": "*.parquet"})})
    status = {Path(f.path).name: f for f in collect.ingest(engine, pq_spec, landing).files}
    assert status["good.parquet"].status == "ingested"
    assert status["bad.parquet"].status == "rejected" and "corrupt Parquet" in (
        status["bad.parquet"].error or ""
    )


def test_truncated_csv_keeps_every_row_and_quarantines_the_cut_one(
    engine, spec, small_sim, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "cut.csv").write_text(
        HEADER + "e1,s1,i000,k4,2026-09-01T10:00:00Z,5000,A,1\n"
        "e2,s1,i000,k4,2026-09-01T10:01:00Z,5000,A,1,surplus\ne3,s1,i0\n"
        'e4,s1,i000,k4,2026-09-01T10:02:00Z,5000,"A, half a quo'
    )
    collect.ingest(engine, spec, landing)
    outcome = clean.clean_pending(engine, spec).versions[0]
    assert (outcome.rows_in, outcome.quarantined) == (4, 3)
    assert outcome.reasons == {"malformed_row": 3}


def test_each_rule_quarantines_with_its_reason(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = [
        "ok1,s1,i000,k4,2026-09-01T10:00:00Z,5000,A,1",
        "ok2,s1,i003,k4,2026-09-01T10:01:00Z,5000,B,",  # ungraded: accepted, no label
        ",s1,i000,k4,2026-09-01T10:02:00Z,5000,A,1",  # missing key
        "bad_ts,s1,i000,k4,yesterday,5000,A,1",
        "bad_rt,s1,i000,k4,2026-09-01T10:03:00Z,fast,A,1",
        "huge_rt,s1,i000,k4,2026-09-01T10:03:00Z,99999999999999999999,A,1",
        "bad_label,s1,i000,k4,2026-09-01T10:04:00Z,5000,A,7",
        "future,s1,i000,k4,2999-01-01T00:00:00Z,5000,A,1",
        "ancient,s1,i000,k4,1999-01-01T00:00:00Z,5000,A,1",
        "rapid,s1,i000,k4,2026-09-01T10:05:00Z,200,A,1",
        "ok1,s1,i000,k4,2026-09-01T10:06:00Z,5000,A,0",  # duplicate event_id
        "sqli,s2,i000,k4,2026-09-01T10:07:00Z,5000,'); DROP TABLE clean_events;--,1",
        "html,s2,i000,k4,2026-09-01T10:08:00Z,5000,<script>alert(1)</script>,0",
        "unk_item,s2,i999,k4,2026-09-01T10:09:00Z,5000,A,1",
        "unk_skill,s2,i000,k9,2026-09-01T10:10:00Z,5000,A,1",
        "mismatch,s2,i000,k3,2026-09-01T10:11:00Z,5000,A,1",
    ]
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "b.csv").write_text(HEADER + "\n".join(rows) + "\n")
    collect.ingest(engine, spec, landing)
    outcome = clean.clean_pending(engine, spec).versions[0]
    assert outcome.rows_in == len(rows) == outcome.accepted + outcome.quarantined
    with engine.connect() as conn:
        q = {r.content["event_id"] or "<empty>": r.reason for r in conn.execute(select(quarantine))}
        accepted = dict(conn.execute(select(clean_events.c.event_id, clean_events.c.answer)).all())
    assert q == {
        "<empty>": "missing_value",
        "bad_ts": "bad_type",
        "bad_rt": "bad_type",
        "huge_rt": "out_of_range",
        "bad_label": "bad_label",
        "future": "ts_in_future",
        "ancient": "ts_out_of_range",
        "rapid": "rapid_guess",
        "ok1": "duplicate_event_id",
        "unk_item": "unknown_item",
        "unk_skill": "unknown_skill",
        "mismatch": "skill_mismatch",
    }
    assert set(accepted) == {"ok1", "ok2", "sqli", "html"}
    assert accepted["sqli"] == "'); DROP TABLE clean_events;--"  # stored as data, bound as a parameter


def test_clean_is_reproducible(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Re-applying the rules to the same raw rows gives the same content hash (the version id is content)."""
    collect.ingest(engine, spec, land(small_sim, tmp_path, range(1)))
    v = clean.clean_pending(engine, spec).versions[0]
    first = datasets.get(engine, v.clean_version_id)
    assert first is not None
    with engine.begin() as conn:  # drop the derived version, keep the raw one
        conn.execute(quarantine.delete())
        conn.execute(clean_events.delete())
        conn.execute(datasets.dataset_versions.delete().where(datasets.dataset_versions.c.kind == "clean"))
    again = clean.clean_pending(engine, spec).versions[0]
    assert again.clean_version_id == v.clean_version_id


def test_labeled_versions_accumulate_with_provenance(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    landing = land(small_sim, tmp_path, range(1))
    collect.ingest(engine, spec, landing)
    clean.clean_pending(engine, spec)
    first = labeling.label_pending(engine, spec)
    assert first.created and first.by_source == {"ground_truth": first.rows}
    assert not labeling.label_pending(engine, spec).created  # nothing new: no new version
    land(small_sim, tmp_path, range(1, 2))
    collect.ingest(engine, spec, landing)
    clean.clean_pending(engine, spec)
    second = labeling.label_pending(engine, spec)
    assert second.created and second.rows == first.rows + second.new_labels and second.new_labels > 0
    v2 = datasets.get(engine, second.labeled_version_id or "")
    assert v2 is not None and first.labeled_version_id in v2.parents
    with engine.connect() as conn:  # the old version is untouched
        n_first = conn.execute(
            select(func.count()).select_from(labels).where(labels.c.version_id == first.labeled_version_id)
        ).scalar_one()
    assert n_first == first.rows
