"""Retention: old raw rows and their landing files are purged, audited, idempotently; lineage still resolves."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from airgate.core import audit, datasets
from airgate.core.spec.sections import Privacy
from airgate.core.warehouse import audit_log, dataset_versions, file_ledger, quarantine, raw_rows, utcnow
from airgate.data import clean, collect, retention
from tests.helpers import land

pytestmark = pytest.mark.data


def _rows(engine, vid: str) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(raw_rows).where(raw_rows.c.version_id == vid)
            ).scalar_one()
        )


def test_old_raw_rows_and_their_files_are_purged_once_and_audited(
    engine, spec, small_sim, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    spec = spec.model_copy(update={"privacy": Privacy(retention_days=30)})
    landing = land(small_sim, tmp_path, range(2))
    ingested = collect.ingest(engine, spec, landing)
    old, recent = ingested.raw_version_ids
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            update(dataset_versions)
            .where(dataset_versions.c.version_id == old)
            .values(created_at=now - timedelta(days=31))
        )
        old_batch = conn.execute(
            select(dataset_versions.c.batch_id).where(dataset_versions.c.version_id == old)
        ).scalar_one()
        old_file = conn.execute(
            select(file_ledger.c.path).where(file_ledger.c.batch_id == old_batch)
        ).scalar_one()
    rows_before = _rows(engine, old)
    clean.clean_pending(engine, spec)  # the simulator's rapid guesses are quarantined with their raw content

    result = retention.purge(engine, spec, now, actor="ops")
    assert result.status == "purged" and [v.version_id for v in result.versions] == [old]
    assert (result.rows, result.versions[0].files) == (rows_before, (old_file,))
    assert not Path(old_file).exists() and _rows(engine, old) == 0
    assert _rows(engine, recent) > 0 and len(list(landing.glob("*.csv"))) == 1  # the recent batch is kept
    kept = datasets.get(engine, old)  # lineage still resolves: the version and its hash, the ledger row
    assert kept is not None and kept.content_hash
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).select_from(file_ledger).where(file_ledger.c.path == old_file)
            ).scalar_one()
            == 1
        )
        event = conn.execute(select(audit_log).where(audit_log.c.event_type == "retention_purge")).one()
    assert event.actor == "ops" and event.entity == {"raw_version_ids": [old]}
    assert event.details["versions"] == [{"version_id": old, "rows": rows_before, "files": [old_file]}]
    assert audit.verify_chain(engine).ok
    with engine.connect() as conn:  # the quarantine's copies of the purged rows go too; reasons stay
        kept_q = conn.execute(
            select(quarantine.c.raw_version_id, quarantine.c.reason, quarantine.c.content)
        ).all()
    old_q = [(r, c) for v, r, c in kept_q if v == old]
    assert old_q and all(c == {"purged": "retention_days=30"} and r for r, c in old_q)
    assert any(v == recent and "student_id" in c for v, _, c in kept_q)

    assert retention.purge(engine, spec, now).status == "nothing_to_purge"  # idempotent: no second event
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).select_from(audit_log).where(audit_log.c.event_type == "retention_purge")
            ).scalar_one()
            == 1
        )


def test_without_retention_days_nothing_is_purged(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    collect.ingest(engine, spec, land(small_sim, tmp_path, range(1)))
    assert retention.purge(engine, spec, utcnow() + timedelta(days=3650)).status == "disabled"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(raw_rows)).scalar_one() > 0
