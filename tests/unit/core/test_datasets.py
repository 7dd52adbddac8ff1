"""Versioned data: current pointer, rollback (audited), diff, and content hashes that can be re-verified."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from airgate.core import audit, datasets
from airgate.core.warehouse import labels, raw_rows
from airgate.data import clean, collect, labeling
from tests.helpers import land

pytestmark = pytest.mark.data


@pytest.fixture
def two_versions(engine, spec, small_sim, tmp_path: Path) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    landing = land(small_sim, tmp_path, range(1))
    collect.ingest(engine, spec, landing)
    clean.clean_pending(engine, spec)
    first = labeling.label_pending(engine, spec).labeled_version_id or ""
    land(small_sim, tmp_path, range(1, 2))
    collect.ingest(engine, spec, landing)
    clean.clean_pending(engine, spec)
    second = labeling.label_pending(engine, spec).labeled_version_id or ""
    return first, second


def test_new_versions_move_current_and_rollback_is_audited(engine, spec, two_versions) -> None:  # type: ignore[no-untyped-def]
    first, second = two_versions
    assert datasets.current(engine, spec.name, "labeled").version_id == second  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="reason"):
        datasets.rollback(engine, spec.name, "labeled", first, "dana", " ")
    with pytest.raises(ValueError, match="not a labeled version"):
        datasets.rollback(engine, spec.name, "labeled", "raw-0000", "dana", "oops")
    assert datasets.rollback(engine, spec.name, "labeled", first, "dana", "bad labels in batch 1") == second
    assert datasets.current(engine, spec.name, "labeled").version_id == first  # type: ignore[union-attr]
    event = audit.events(engine, event_type="dataset_rollback")[-1]
    assert event["actor"] == "dana" and event["details"] == {
        "from": second,
        "reason": "bad labels in batch 1",
    }
    assert datasets.latest(engine, spec.name, "labeled").version_id == second  # type: ignore[union-attr]  # nothing deleted


def test_diff_counts_added_removed_and_relabeled(engine, spec, two_versions) -> None:  # type: ignore[no-untyped-def]
    first, second = two_versions
    d = datasets.diff(engine, first, second)
    v1, v2 = datasets.get(engine, first), datasets.get(engine, second)
    assert v1 is not None and v2 is not None
    assert (d.added, d.removed, d.changed) == (v2.row_count - v1.row_count, 0, 0)
    assert d.added == v2.summary["rows_added"] and len(d.examples["added"]) == 10
    back = datasets.diff(engine, second, first)
    assert (back.added, back.removed) == (0, d.added)
    with pytest.raises(ValueError, match="cannot diff"):
        datasets.diff(engine, first, v2.parents[-1])


def test_hashes_reverify_and_tampering_is_caught(engine, spec, two_versions) -> None:  # type: ignore[no-untyped-def]
    first, second = two_versions
    raws = datasets.list_versions(engine, spec.name, "raw")
    assert all(datasets.verify(engine, v.version_id) for v in raws)
    assert datasets.verify(engine, first) and datasets.verify(engine, second)
    with engine.begin() as conn:
        conn.execute(update(labels).where(labels.c.version_id == second).values(label=1 - labels.c.label))
        conn.execute(
            update(raw_rows)
            .where(raw_rows.c.version_id == raws[0].version_id, raw_rows.c.row_num == 3)
            .values(content={"event_id": "forged"})
        )
    assert not datasets.verify(engine, second) and not datasets.verify(engine, raws[0].version_id)
    assert datasets.verify(engine, first)


def test_rebuilding_a_raw_version_from_its_file_gives_the_same_id(
    engine, spec, small_sim, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import delete

    from airgate.core.warehouse import dataset_versions, file_ledger

    landing = land(small_sim, tmp_path, range(1))
    first = collect.ingest(engine, spec, landing).raw_version_ids
    with engine.begin() as conn:  # lose the warehouse copy entirely
        conn.execute(delete(raw_rows))
        conn.execute(delete(file_ledger))
        conn.execute(delete(dataset_versions))
    assert collect.ingest(engine, spec, landing).raw_version_ids == first
