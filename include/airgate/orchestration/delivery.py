"""Delivering an alert: resolve a notifier (a BaseNotifier class or a callback, by dotted path) and call it the way
it expects, with the outcome recorded. ``alerts`` decides when to alert and what to say.

The implementation lives in ``airgate.governance.notices``, because governance notices (sent from the web layer,
which may not import orchestration) deliver the same way; this module keeps the names callers import."""

from __future__ import annotations

from airgate.governance.notices import (
    ACTOR,
    MAX_ERROR,
    AlertError,
    AlertOutcome,
    _call_notifier,
    _takes_context,
    _takes_positional,
    deliver,
    resolve,
)

__all__ = [
    "ACTOR",
    "MAX_ERROR",
    "AlertError",
    "AlertOutcome",
    "_call_notifier",
    "_takes_context",
    "_takes_positional",
    "deliver",
    "resolve",
]
