"""The trigger behind the train DAG's ``await_approval``: poll the run's approval request from the triggerer.

It runs in the triggerer process, which has no task context and may not use Airflow's ORM: it opens the warehouse
itself from the deployment settings (``airgate.core.settings.warehouse_engine``) and reads only
``approval_requests`` (``airgate.governance.approval_wait``), in a thread so the event loop is never blocked by
the database. It fires once the verdict is no longer "wait": a decision, an expiry, or the time for the "about to
expire" notice (the task sends it and defers again, ``warned=True``). Between polls it sleeps ``poll_interval``,
never past the moment the verdict would change by the clock alone (the warning time, the expiry).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airgate.core.warehouse import utcnow

CLASSPATH = "airgate.orchestration.approval_trigger.ApprovalDecisionTrigger"


def poll_once(training_run_id: str, warning_fraction: float, warned: bool) -> dict[str, Any]:
    """One look at the warehouse: the verdict as a TriggerEvent payload."""
    from airgate.core.settings import warehouse_engine
    from airgate.governance import approval_wait

    verdict = approval_wait.check(
        warehouse_engine(), training_run_id, warning_fraction=warning_fraction, warned=warned
    )
    return verdict.to_event()


class ApprovalDecisionTrigger(BaseTrigger):
    """Fires with the approval verdict (``approval_wait.Verdict.to_event()``) once it is not "wait"."""

    def __init__(
        self, training_run_id: str, warning_fraction: float, warned: bool = False, poll_interval: float = 30.0
    ) -> None:
        super().__init__()
        self.training_run_id = training_run_id
        self.warning_fraction = warning_fraction
        self.warned = warned
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "training_run_id": self.training_run_id,
                "warning_fraction": self.warning_fraction,
                "warned": self.warned,
                "poll_interval": self.poll_interval,
            },
        )

    def _sleep_for(self, event: dict[str, Any]) -> float:
        """The poll interval, cut short so the clock-driven verdicts (warning, expiry) are seen on time."""
        until = event.get("until")
        if not until:
            return self.poll_interval
        from airgate.governance.approval_wait import Verdict

        due = Verdict.from_event(event).until
        left = (due - utcnow()).total_seconds() if due else self.poll_interval
        return max(0.05, min(self.poll_interval, left))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            event = await asyncio.to_thread(
                poll_once, self.training_run_id, self.warning_fraction, self.warned
            )
            if event["outcome"] != "wait":
                yield TriggerEvent(event)
                return
            await asyncio.sleep(self._sleep_for(event))
