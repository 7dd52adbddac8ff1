"""Delivering an alert: resolve a notifier (a BaseNotifier class or a callback, by dotted path) and call it the way
it expects, with the outcome recorded. ``alerts`` decides when to alert and what to say."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from airgate.core.spec import AlertTarget

ACTOR = "airflow"
MAX_ERROR = 500


class AlertError(RuntimeError):
    """Some notifier failed, or an alert could not be audited (the others were still tried)."""


@dataclass(frozen=True)
class AlertOutcome:
    kind: str
    notifier: str
    ok: bool
    error: str | None = None
    audited: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- resolving


def resolve(path: str) -> Any:
    """The object a dotted path names (``package.module.Name``), by Airflow's own loader."""
    from airflow.sdk.module_loading import import_string

    return import_string(path)


def _takes_context(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "context" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _takes_positional(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return any(
        p.kind
        in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.VAR_POSITIONAL,
        )
        for p in params.values()
    )


def _call_notifier(notifier: Any, context: dict[str, Any]) -> None:
    """Call a notifier instance the way Airflow would: a BaseNotifier renders its templates, then ``notify``
    (or ``async_notify`` when that is all it implements); any other callable gets the context."""
    from airflow.sdk import BaseNotifier

    if isinstance(notifier, BaseNotifier):
        cls = type(notifier)
        if cls.notify is BaseNotifier.notify and cls.async_notify is not BaseNotifier.async_notify:
            notifier.context = context  # type: ignore[assignment]

            async def _await() -> None:
                await notifier

            asyncio.run(_await())
            return
        notifier(context)
    elif _takes_context(notifier):
        notifier(context=context)
    elif _takes_positional(notifier):
        notifier(context)
    else:
        notifier()


def deliver(target: AlertTarget, context: dict[str, Any]) -> None:
    """Import the target and call it. A class is built with the kwargs, then called with the context; a function
    is called with the kwargs (and ``context=`` when it takes one), and if it returns a notifier, that is called."""
    obj = resolve(target.notifier)
    if inspect.isclass(obj):
        _call_notifier(obj(**target.kwargs), context)
        return
    if not callable(obj):
        raise TypeError(f"{target.notifier} is a {type(obj).__name__}, not a notifier class or a function")
    result = obj(**target.kwargs, context=context) if _takes_context(obj) else obj(**target.kwargs)
    if callable(result):
        _call_notifier(result, context)
