"""The landing-zone trigger and object-storage landing zones."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from airgate.data import collect
from tests.helpers import land

pytestmark = pytest.mark.data


@pytest.fixture
def wired(sqlite_engine, monkeypatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRGATE_WAREHOUSE",
        json.dumps({"conn_type": "sqlite", "host": str(sqlite_engine.url.database)}),
    )
    return sqlite_engine


def test_trigger_waits_for_new_content_and_round_trips(wired, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from airflow.triggers.base import TriggerEvent

    from airgate.orchestration.sensors import NewLandingFilesTrigger

    landing = tmp_path / "landing"
    land(small_sim, tmp_path, range(1))
    collect.ingest(
        wired, spec, landing
    )  # what is there now is already ingested: the trigger must keep waiting
    trigger = NewLandingFilesTrigger(spec.name, str(landing), "*.csv", poll_interval=0.2)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airgate.orchestration.sensors.NewLandingFilesTrigger"
    trigger = NewLandingFilesTrigger(**kwargs)

    def later() -> None:
        time.sleep(1.0)
        small_sim.write_batch(1, landing, tmp_path / "oracle")

    async def first_event() -> TriggerEvent:
        return await anext(trigger.run())

    threading.Thread(target=later).start()
    t0 = time.monotonic()
    event = asyncio.run(first_event())
    assert time.monotonic() - t0 >= 0.9
    assert event.payload["status"] == "found"
    assert [Path(p).name for p in event.payload["paths"]] == ["interactions_0001.csv"]


def test_object_storage_uri_landing_zone(sqlite_engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from airgate.core.settings import resolve_location

    land(small_sim, tmp_path, range(2))
    location = resolve_location(f"file://{tmp_path / 'landing'}")
    assert type(location).__name__ == "ObjectStoragePath"
    result = collect.ingest(sqlite_engine, spec, location)
    assert len(result.raw_version_ids) == 2
    assert result.rows == sum(len(small_sim.batch(b).events) for b in range(2))
    assert collect.ingest(sqlite_engine, spec, location).files == []


def test_files_the_sensor_saw_but_the_worker_cannot_read_are_named_not_skipped(
    sqlite_engine,
    spec,
    small_sim,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """The triggerer and a worker on another host with its own folder: the sensor fired on files the ingest
    cannot see. That must fail naming the files, never pass as 'nothing new'."""
    landing = land(small_sim, tmp_path / "triggerer-host", range(1))
    sensed = [f.path for f in collect.new_files(sqlite_engine, spec.name, landing, "*.csv")]
    assert sensed
    elsewhere = collect.ingest(sqlite_engine, spec, tmp_path / "worker-host" / "landing")
    assert elsewhere.files == []
    assert collect.unaccounted(sqlite_engine, spec.name, sensed, elsewhere) == sensed
    # Where both reach the same store, the sensed files are accounted for: ingested now, or by an earlier try.
    here = collect.ingest(sqlite_engine, spec, landing)
    assert collect.unaccounted(sqlite_engine, spec.name, sensed, here) == []
    assert collect.unaccounted(sqlite_engine, spec.name, sensed, collect.IngestResult(spec.name)) == []
