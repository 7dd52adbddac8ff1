"""The landing-zone sensor and its trigger: wait for files the file ledger has not seen, without holding a worker.

"New" is decided by the ledger (path and SHA-256), not by a file's mere presence, so a landing zone that keeps
its old files never fires the sensor twice for the same content. While waiting, the sensor is deferred: the check
runs in the triggerer (a thread per check, so the event loop is never blocked by file hashing or the database).
Airflow glue, like the DAG factory: the logic lives in ``airgate.data.collect``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSkipException
from airflow.triggers.base import BaseTrigger, TriggerEvent


def _new_paths(model: str, landing: str, pattern: str) -> list[str]:
    from airgate.core.settings import resolve_location, warehouse_engine
    from airgate.data import collect

    return [f.path for f in collect.new_files(warehouse_engine(), model, resolve_location(landing), pattern)]


class NewLandingFilesTrigger(BaseTrigger):
    """Fires once new (path, content) pairs appear in the landing zone."""

    def __init__(self, model: str, landing: str, pattern: str, poll_interval: float = 30.0) -> None:
        super().__init__()
        self.model = model
        self.landing = landing
        self.pattern = pattern
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airgate.orchestration.sensors.NewLandingFilesTrigger",
            {
                "model": self.model,
                "landing": self.landing,
                "pattern": self.pattern,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            paths = await asyncio.to_thread(_new_paths, self.model, self.landing, self.pattern)
            if paths:
                yield TriggerEvent({"status": "found", "paths": paths})
                return
            await asyncio.sleep(self.poll_interval)


class LandingZoneSensor(BaseSensorOperator):
    """Waits for new landing files of one model. Deferrable by default; returns the new paths (XCom)."""

    template_fields = ("landing",)

    def __init__(
        self, *, model: str, landing: str, pattern: str, deferrable: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.landing = landing
        self.pattern = pattern
        self.deferrable = deferrable

    def poke(self, context: Any) -> bool | PokeReturnValue:
        paths = _new_paths(self.model, self.landing, self.pattern)
        return PokeReturnValue(is_done=bool(paths), xcom_value=paths)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        paths = _new_paths(self.model, self.landing, self.pattern)
        if paths:
            return paths
        self.defer(
            trigger=NewLandingFilesTrigger(self.model, self.landing, self.pattern, self.poke_interval),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> list[str]:
        if not event or event.get("status") != "found":
            raise AirflowSkipException(f"no new landing files: {event}")
        return list(event["paths"])
