"""The audit log: append-only, hash-chained, tamper-evident, safe under concurrent writers."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import delete, update

from airgate import audit
from airgate.warehouse import audit_log

pytestmark = pytest.mark.unit


def _fill(engine, n: int = 5) -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        audit.record(engine, actor=f"user{i}", event_type="ingest", model="m",
                     entity={"batch_id": f"b{i}"}, details={"rows": i, "note": "ünïcode ✓"})


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
