"""A notifier that records its calls, for the alert tests: each call is one JSON line in
$AIRGATE_HOME/recorded_alerts.jsonl, so calls made in another process (a DAG run, Airflow's callback runner) can
be read back. Named in specs as ``tests.recording_notifier.RecordingNotifier`` (a BaseNotifier, built with its
kwargs) or ``tests.recording_notifier.record_call`` (a plain callback function)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier

from airgate.orchestration.alerts import context_ids


def _file() -> Path:
    return Path(os.environ["AIRGATE_HOME"]) / "recorded_alerts.jsonl"


def _record(via: str, label: str, context: Mapping[str, Any], **extra: Any) -> None:
    alert = dict(context.get("airgate_alert") or {})
    exc = context.get("exception")
    line = {
        "via": via,
        "label": label,
        "kind": alert.get("kind"),
        "model": alert.get("model"),
        "message": alert.get("message"),
        "details": alert.get("details"),
        **context_ids(context),
        "exception": f"{type(exc).__name__}: {exc}" if exc is not None else None,
        "deadline": context.get("deadline"),
        "pid": os.getpid(),
        **extra,
    }
    _file().parent.mkdir(parents=True, exist_ok=True)
    with _file().open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, default=str) + "\n")


class RecordingNotifier(BaseNotifier):
    """``fail: true`` makes it raise after nothing was recorded, like a mail server that is down. ``subject`` is a
    template over the context (as in SmtpNotifier), recorded as rendered."""

    template_fields = ("subject",)

    def __init__(
        self, label: str = "recorder", fail: bool = False, subject: str = "[airgate] {{ airgate_alert.kind }}"
    ) -> None:
        super().__init__()
        self.label = label
        self.fail = fail
        self.subject = subject

    def notify(self, context: Any) -> None:
        if self.fail:
            raise ConnectionError(f"{self.label}: notification service unreachable")
        _record("notifier", self.label, context, subject=self.subject)


def record_call(label: str = "function", context: Mapping[str, Any] | None = None) -> None:
    """A plain callback function, as a spec may name instead of a notifier class."""
    _record("function", label, context or {})


def recorded() -> list[dict[str, Any]]:
    f = _file()
    if not f.exists():
        return []
    return [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
