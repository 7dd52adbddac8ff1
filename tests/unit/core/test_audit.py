"""The audit log: append-only, hash-chained, tamper-evident, safe under concurrent writers."""

from __future__ import annotations

import threading
from typing import Any

import pytest
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


# ------------------------------------------------------------------------------- the keyed chain and its anchors


def _rehash_from(engine, seq: int, details: dict) -> None:  # type: ignore[no-untyped-def]
    """The attack on an unkeyed chain: edit one entry, then recompute its hash and every later one."""
    from sqlalchemy import select

    with engine.begin() as conn:
        rows = [dict(r) for r in conn.execute(select(audit_log).order_by(audit_log.c.seq)).mappings()]
        prev = audit.GENESIS
        for r in rows:
            if r["seq"] == seq:
                r["details"] = details
            if r["seq"] >= seq:
                r["prev_hash"] = prev
                r["hash"] = audit.row_hash(r)
                conn.execute(
                    update(audit_log)
                    .where(audit_log.c.seq == r["seq"])
                    .values(
                        details=r["details"], prev_hash=r["prev_hash"], hash="x" * 63 + str(r["seq"] % 10)
                    )
                )
            prev = r["hash"]
        for r in rows:  # hashes are unique: park them first, then write the recomputed ones
            if r["seq"] >= seq:
                conn.execute(update(audit_log).where(audit_log.c.seq == r["seq"]).values(hash=r["hash"]))


def test_every_entry_carries_a_mac_under_the_key(engine) -> None:  # type: ignore[no-untyped-def]
    _fill(engine, 3)
    key = audit.audit_key()
    assert all(
        audit.mac_matches(key, e["hash"], e["mac"]) and audit.authentic(e) for e in audit.events(engine)
    )
    assert not audit.mac_matches(
        b"another-key-of-16-chars", audit.events(engine)[0]["hash"], audit.events(engine)[0]["mac"]
    )


def test_an_edited_and_rehashed_chain_fails_on_its_mac(engine) -> None:  # type: ignore[no-untyped-def]
    _fill(engine, 6)
    seq = audit.events(engine)[2]["seq"]
    _rehash_from(engine, seq, {"rows": 999})
    report = audit.verify_chain(engine)
    assert not report.ok and report.first_broken_seq == seq and "MAC" in (report.reason or "")


def test_deleting_the_newest_entries_fails_against_the_anchor(engine) -> None:  # type: ignore[no-untyped-def]
    from airgate.core import audit_anchor

    _fill(engine, 5)
    head = audit_anchor.anchor(engine, None)
    assert head is not None and head.seq == audit.events(engine)[-1]["seq"]
    assert audit_anchor.verify(engine, None).ok and audit_anchor.verify(engine, None).anchored_seq == head.seq
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq >= head.seq - 1))
    assert audit.verify_chain(engine).ok  # the shorter chain is valid on its own...
    report = audit_anchor.verify(engine, None)  # ...but not against the anchor
    assert not report.ok and report.first_broken_seq == head.seq and "truncated" in (report.reason or "")


def test_a_replaced_tail_does_not_match_its_anchor(engine) -> None:  # type: ignore[no-untyped-def]
    from airgate.core import audit_anchor

    _fill(engine, 4)
    head = audit_anchor.anchor(engine, None)
    assert head is not None
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == head.seq))
    _fill(engine, 2)  # new entries where the anchored one was (SQLite reuses the seq, PostgreSQL does not)
    report = audit_anchor.verify(engine, None)
    assert not report.ok and report.first_broken_seq == head.seq
    assert "does not match" in (report.reason or "") or "is gone" in (report.reason or "")
    with pytest.raises(audit_anchor.AnchorRefused):
        audit_anchor.anchor(engine, None)  # the evidence is not overwritten by a new head


def test_a_forged_anchor_fails_its_mac(engine) -> None:  # type: ignore[no-untyped-def]
    import json

    from airgate.core import audit_anchor, storage

    _fill(engine, 3)
    head = audit_anchor.anchor(engine, None)
    assert head is not None
    path = audit_anchor._folder(head.chain) / audit_anchor._name(head.seq)
    forged = json.loads(storage.read_text(path))
    forged["seq"] = 1
    storage.write_text_atomic(path, json.dumps(forged))
    report = audit_anchor.verify(engine, None)
    assert not report.ok and "MAC" in (report.reason or "")


def test_governance_events_without_any_anchor_fail_verify(engine) -> None:  # type: ignore[no-untyped-def]
    from airgate.core import audit_anchor

    _fill(engine, 2)
    assert audit_anchor.verify(engine, None).ok  # no governance yet: nothing must be anchored
    audit.record(engine, actor="ann", event_type="decision", model="m", entity={"approval_request_id": "r1"})
    report = audit_anchor.verify(engine, None)
    decision = audit.events(engine, event_type="decision")[0]["seq"]
    assert not report.ok and report.first_broken_seq == decision and "no anchor" in (report.reason or "")
    audit_anchor.anchor(engine, None)
    assert audit_anchor.verify(engine, None).ok


def test_storage_and_registry_anchors_must_agree(engine, mlflow_cfg) -> None:  # type: ignore[no-untyped-def]
    from airgate.core import audit_anchor, storage

    _fill(engine, 3)
    first = audit_anchor.anchor(engine, mlflow_cfg)
    assert first is not None and audit_anchor.registry_anchor(mlflow_cfg) == first
    assert audit_anchor.verify(engine, mlflow_cfg).ok
    _fill(engine, 1)
    second = audit_anchor.anchor(engine, mlflow_cfg)
    assert second is not None and audit_anchor.registry_anchor(mlflow_cfg) == second
    (audit_anchor._folder(second.chain) / audit_anchor._name(second.seq)).unlink()  # storage loses its newest
    report = audit_anchor.verify(engine, mlflow_cfg)
    assert not report.ok and report.first_broken_seq == second.seq and "disagree" in (report.reason or "")
    storage.write_text_atomic(
        audit_anchor._folder(second.chain) / audit_anchor._name(second.seq), second.to_json()
    )
    assert audit_anchor.verify(engine, mlflow_cfg).ok
    with engine.begin() as conn:  # the whole log deleted: only the registry still knows
        conn.execute(delete(audit_log))
    report = audit_anchor.verify(engine, mlflow_cfg)
    assert not report.ok and "empty" in (report.reason or "")


def test_an_upgraded_log_is_unsealed_until_sealed_once(engine) -> None:  # type: ignore[no-untyped-def]
    from airgate.core import audit_anchor, audit_seal

    _fill(engine, 4)
    with engine.begin() as conn:  # rows written before revision 0013 have no MAC
        conn.execute(update(audit_log).values(mac=None))
    report = audit.verify_chain(engine)
    assert not report.ok and report.first_broken_seq == audit.events(engine)[0]["seq"]
    assert "seal" in (report.reason or "")
    sealed = audit_seal.seal(engine)
    assert sealed.ok and sealed.sealed == 4
    assert audit.verify_chain(engine).ok and audit.events(engine, event_type="audit_sealed")
    assert audit_seal.seal(engine).sealed == 0  # once
    audit_anchor.anchor(engine, None)
    assert audit_anchor.verify(engine, None).ok


def test_seal_refuses_a_chain_already_broken(engine) -> None:  # type: ignore[no-untyped-def]
    from airgate.core import audit_seal

    _fill(engine, 3)
    seq = audit.events(engine)[1]["seq"]
    with engine.begin() as conn:
        conn.execute(update(audit_log).values(mac=None))
        conn.execute(update(audit_log).where(audit_log.c.seq == seq).values(details={"rows": 7}))
    got = audit_seal.seal(engine)
    assert not got.ok and got.first_broken_seq == seq
    assert all(e["mac"] is None for e in audit.events(engine))  # nothing was blessed


def test_verify_streams_a_large_log_in_batches(sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    """10k entries in batches of 500: every query of the walk fetches at most one batch (none loads the log whole).
    The size is about batches, not speed: timing targets live in bench/."""
    from datetime import timedelta

    from sqlalchemy import event

    from airgate.core import audit_anchor
    from airgate.core.warehouse import utcnow

    key, prev, t0, n, rows = audit.audit_key(), audit.GENESIS, utcnow(), 10_000, []
    for i in range(n):
        r: dict[str, Any] = {
            "at": t0 + timedelta(microseconds=i),
            "actor": "a",
            "event_type": "ingest",
            "model": "m",
        }
        r |= {"entity": {"i": i}, "details": {}, "prev_hash": prev}
        r["hash"] = audit.row_hash(r)
        r["mac"] = audit.entry_mac(key, r["hash"])
        rows.append(r)
        prev = r["hash"]
    with sqlite_engine.begin() as conn:
        conn.execute(audit_log.insert(), rows)
    del rows
    walks: list[object] = []

    def count(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "FROM audit_log" in statement and "audit_log.seq >" in statement:
            walks.append(params)

    event.listen(sqlite_engine, "after_cursor_execute", count)
    try:
        report = audit_anchor.verify(sqlite_engine, None, batch=500)
    finally:
        event.remove(sqlite_engine, "after_cursor_execute", count)
    assert report.ok and report.entries == n
    assert 20 <= len(walks) <= 21  # n / batch queries, each LIMITed to one batch (and a last, empty one)
    assert all(500 in p for p in walks)  # type: ignore[operator]
