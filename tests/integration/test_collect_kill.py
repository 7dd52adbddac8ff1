"""Exactly once under the worst case: the ingest process is SIGKILLed in the middle of writing, then retried."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from airgate.core.warehouse import dataset_versions, file_ledger, raw_rows
from airgate.data import clean, collect
from tests.helpers import kill_mid_write, land

pytestmark = pytest.mark.data

KILLED_INGEST = """
import sys, time
from airgate.data import collect
from airgate.core.spec import find_spec
from airgate.core.warehouse import make_engine

url, landing, marker = sys.argv[1:4]
real = collect.bulk_insert

def write_then_hang(conn, table, rows, columns=None):
    n = real(conn, table, rows, columns)  # the rows are written, the transaction is still open
    open(marker, "w").write("mid-write")
    time.sleep(600)
    return n

collect.bulk_insert = write_then_hang
collect.ingest(make_engine(url), find_spec("knowledge_tracing"), landing)
"""


def _count(engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_kill_mid_write_then_retry_loses_and_duplicates_nothing(
    engine, spec, small_sim, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    landing = land(small_sim, tmp_path, range(2))
    marker = tmp_path / "marker"
    url = engine.url.render_as_string(hide_password=False)
    kill_mid_write(KILLED_INGEST, [url, str(landing), str(marker)], marker, "ingest", timeout_s=120)

    # Nothing of the killed attempt is visible: no rows, no version, no ledger entry.
    assert (_count(engine, raw_rows), _count(engine, dataset_versions), _count(engine, file_ledger)) == (
        0,
        0,
        0,
    )

    retry = collect.ingest(engine, spec, landing)  # the scheduler's retry
    expected = sum(len(small_sim.batch(b).events) for b in range(2))
    assert retry.rows == expected == _count(engine, raw_rows)
    assert collect.ingest(engine, spec, landing).files == []  # and a further retry finds nothing to do
    outcome = clean.clean_pending(engine, spec)
    assert sum(v.rows_in for v in outcome.versions) == expected
