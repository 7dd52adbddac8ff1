"""Notifiers that ship with airgate and need nothing outside it, so the demo's alerts work without SMTP or Slack.

Name them in a spec's ``alerts`` section like any other Airflow notifier, e.g.
``on_failure: [{notifier: airgate.notifiers.LogNotifier}]``. Imported only when an alert is sent.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier

from airgate.core.settings import airgate_home


class LogNotifier(BaseNotifier):
    """Writes the alert to the log (the task log when a task sends it) and appends it as one JSON line to
    ``path`` (relative paths are under $AIRGATE_HOME; ``null``: log only). ``message`` is a Jinja template over the
    context; by default the alert's own message.

    The JSON-lines file is a per-host log, on the local disk of whichever process sends the alert, deliberately
    not in airgate's shared storage (``AIRGATE_STORAGE_URL``): object stores cannot append, and no task reads it.
    In a deployment of several hosts, use a notifier that reaches people (SMTP, Slack) for alerts that matter."""

    template_fields = ("message",)

    def __init__(
        self,
        message: str = "{{ airgate_alert.message }}",
        path: str | None = "alerts/alerts.jsonl",
        level: str = "warning",
    ) -> None:
        super().__init__()
        self.message = message
        self.path = path
        self.level = logging.getLevelNamesMapping().get(level.upper(), logging.WARNING)

    def notify(self, context: Any) -> None:
        alert = dict(context.get("airgate_alert") or {})
        logging.getLogger("airgate.orchestration.alerts").log(
            self.level, "ALERT %s: %s", alert.get("kind", "?"), self.message
        )
        if self.path is None:
            return
        from airgate.orchestration.alerts import context_ids

        line = {
            "at": datetime.now(UTC).isoformat(),
            "model": alert.get("model"),
            "kind": alert.get("kind"),
            "message": self.message,
            **context_ids(context),
        }
        local = Path(os.path.expandvars(self.path))
        target = local if local.is_absolute() else airgate_home() / local
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")
