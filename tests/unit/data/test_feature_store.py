"""Materialized features: once per clean version, the same rows build_features gives, split by student."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from airgate.core import audit, datasets
from airgate.data import feature_store
from airgate.data.features import FEATURES, build_features, load_history
from tests.helpers import prepare_data


def test_features_are_computed_once_and_are_the_training_functions_rows(  # type: ignore[no-untyped-def]
    engine, spec, small_sim, tmp_path: Path
) -> None:
    prepare_data(engine, spec, small_sim, tmp_path)
    version = datasets.latest(engine, spec.name, "clean")
    assert version is not None
    runs = tmp_path / "runs"
    first = feature_store.materialize(engine, spec, version.version_id, runs, partitions=3)
    assert first.created and len(first.shards) == 3 and first.rows == version.row_count

    rows = pd.concat([pd.read_parquet(s.path) for s in first.shards], ignore_index=True)
    # every student in exactly one shard
    assert rows.groupby("student_id")["event_id"].count().sum() == len(rows)
    per_shard = [set(pd.read_parquet(s.path)["student_id"]) for s in first.shards]
    assert all(not (a & b) for i, a in enumerate(per_shard) for b in per_shard[i + 1 :])
    # the very rows build_features gives over the history: one feature path
    history = load_history(engine, spec.name)
    expected = build_features(history).set_index("event_id").loc[rows["event_id"], FEATURES]
    pd.testing.assert_frame_equal(rows.set_index("event_id")[FEATURES], expected)

    again = feature_store.materialize(engine, spec, version.version_id, runs, partitions=3)
    assert (
        not again.created and again.shards == first.shards
    )  # the retry, or the nightly plan, reads the files
    made = audit.events(engine, event_type="features_materialized")
    assert len(made) == 1 and made[0]["entity"]["data_version"] == version.version_id
    assert feature_store.materialize(engine, spec, version.version_id, runs, partitions=1).created


def test_an_unknown_version_is_refused_by_name(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prepare_data(engine, spec, small_sim, tmp_path)
    with pytest.raises(ValueError, match="clean version clean-nope .* no rows"):
        feature_store.materialize(engine, spec, "clean-nope", tmp_path / "runs")
    assert not (tmp_path / "runs" / "features" / spec.name).exists() or not any(
        (tmp_path / "runs" / "features" / spec.name).iterdir()
    )
