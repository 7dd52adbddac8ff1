"""Notifiers that ship with airgate and need nothing outside it, so the demo's alerts work without SMTP or Slack.

Name them in a spec's ``alerts`` section like any other Airflow notifier, e.g.
``on_failure: [{notifier: airgate.notifiers.LogNotifier}]``. Imported only when an alert is sent.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseNotifier

from airgate.runtime import resolve_path


class LogNotifier(BaseNotifier):
    """Writes the alert to the log (the task log when a task sends it) and appends it as one JSON line to
    ``path`` (relative paths are under $AIRGATE_HOME; ``null``: log only). ``message`` is a Jinja template over the
    context; by default the alert's own message."""

    template_fields = ("message",)

    def __init__(self, message: str = "{{ airgate_alert.message }}", path: str | None = "alerts/alerts.jsonl",
                 level: str = "warning") -> None:
        super().__init__()
        self.message = message
        self.path = path
        self.level = logging.getLevelNamesMapping().get(level.upper(), logging.WARNING)

    def notify(self, context: Any) -> None:
        alert = dict(context.get("airgate_alert") or {})
        logging.getLogger("airgate.alerts").log(self.level, "ALERT %s: %s", alert.get("kind", "?"), self.message)
        if self.path is None:
            return
        from airgate.alerts import context_ids

        line = {"at": datetime.now(UTC).isoformat(), "model": alert.get("model"), "kind": alert.get("kind"),
                "message": self.message, **context_ids(context)}
        target = resolve_path(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")
