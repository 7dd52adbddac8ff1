"""The audit log: append-only, hash-chained, tamper-evident, safe under concurrent writers."""

from __future__ import annotations

import threading

from sqlalchemy import delete, update

from airgate.core import audit
from airgate.core.warehouse import audit_log


def _fill(engine, n: int = 5) -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        audit.record(
            engine,
            actor=f"user{i}",
            event_type="ingest",
            model="m",
            entity={"batch_id": f"b{i}"},
            details={"rows": i, "note": "ünïcode ✓"},
        )


def test_chain_verifies_and_links(engine) -> None:  # type: ignore[no-untyped-def]
    _fill(engine)
    report = audit.verify_chain(engine)
    assert report.ok and report.entries == 5
    rows = audit.events(engine, model="m")
    assert rows[0]["prev_hash"] == audit.GENESIS
    assert all(rows[i]["prev_hash"] == rows[i - 1]["hash"] for i in range(1, 5))


def test_edited_row_is_named(engine) -> None:  # type: ignore[no-untyped-def]
    _fill(engine)
    seq = audit.events(engine)[2]["seq"]
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == seq).values(details={"rows": 999}))
    report = audit.verify_chain(engine)
    assert not report.ok and report.first_broken_seq == seq and "content" in (report.reason or "")


def test_deleted_row_breaks_the_next_link(engine) -> None:  # type: ignore[no-untyped-def]
    _fill(engine)
    seqs = [e["seq"] for e in audit.events(engine)]
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == seqs[1]))
    report = audit.verify_chain(engine)
    assert not report.ok and report.first_broken_seq == seqs[2]


def test_concurrent_writers_never_fork_the_chain(engine) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(10):
                audit.record(engine, actor=f"w{k}", event_type="decision", model="m", entity={"i": i})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = audit.verify_chain(engine)
    assert report.ok and report.entries == 40


def _varied(engine) -> None:  # type: ignore[no-untyped-def]
    for i in range(30):
        audit.record(
            engine,
            actor="alice" if i % 3 else "bob",
            event_type="decision" if i % 2 else "train",
            model="m" if i < 20 else "other",
            entity={"model_version": str(i % 4)},
            details={"comment": '=HYPERLINK("http://evil")' if i == 7 else "ok", "i": i},
        )


def test_filters_narrow_by_model_version_actor_type_and_time(engine) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    _varied(engine)
    everything = audit.page(engine, audit.AuditFilter(), limit=1000).events
    assert len(everything) == 30 and everything[0]["seq"] > everything[-1]["seq"]  # newest first
    got = audit.page(
        engine, audit.AuditFilter(model="m", model_version="1", actor="alice", event_type="decision")
    ).events
    expect = [i for i in range(20) if i % 4 == 1 and i % 3 and i % 2]
    assert sorted(r["details"]["i"] for r in got) == expect and expect
    middle = everything[15]["at"]
    later = audit.page(engine, audit.AuditFilter(since=middle), limit=1000).events
    assert {r["seq"] for r in later} == {r["seq"] for r in everything if r["at"] >= middle}
    assert (
        audit.page(engine, audit.AuditFilter(until=everything[-1]["at"] - timedelta(seconds=1))).events == []
    )
    # a filter value is data, never SQL
    assert audit.page(engine, audit.AuditFilter(actor="alice' OR '1'='1")).events == []


def test_pages_cover_every_event_once(engine) -> None:  # type: ignore[no-untyped-def]
    _varied(engine)
    seen, before = [], None
    while True:
        p = audit.page(engine, audit.AuditFilter(), before=before, limit=7)
        seen += [r["seq"] for r in p.events]
        if p.next_before is None:
            break
        before = p.next_before
    assert len(seen) == len(set(seen)) == 30 and seen == sorted(seen, reverse=True)


def test_csv_export_neutralises_formulas_and_streams_everything(engine) -> None:  # type: ignore[no-untyped-def]
    import csv
    import io

    _varied(engine)
    text = "".join(audit.to_csv_lines(audit.iter_filtered(engine, audit.AuditFilter(model="m"), batch=6)))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 20 and [int(r["seq"]) for r in rows] == sorted(int(r["seq"]) for r in rows)
    evil = next(r for r in rows if "HYPERLINK" in r["details"])
    assert evil["details"].startswith("{")  # JSON cells start with a brace, not '='
    cell = audit._csv_safe("=SUM(A1)")
    assert cell == "'=SUM(A1)" and audit._csv_safe("-2+3") == "'-2+3" and audit._csv_safe("plain") == "plain"
