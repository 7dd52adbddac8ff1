"""Governance notifications: an approval request opened, about to expire or decided, a break-glass or a rollback
tells the notifiers the spec names in ``alerts.on_governance``; and the delivery every airgate alert shares.

Why here and not in ``orchestration.alerts``: governance events happen in the web layer (a decision, a
rollback) as well as in tasks, and the web layer may not import orchestration, nor may governance import Airflow
(import-linter contracts in pyproject.toml). So a notifier is named by its dotted path and imported with
:mod:`importlib` when a notice is sent, in whichever process sends it; a ``BaseNotifier`` is recognised by its
class hierarchy, not by importing Airflow. ``orchestration.alerts`` (task failures, deadlines, alarms) sends
through the same :func:`send`, so both are audited the same way: ``alert_sent`` per notifier that succeeded,
``alert_failed`` per notifier that could not be imported or raised, and one failing never stops the others.

A notice never raises: it is a side effect of a decision already recorded, and a broken SMTP server must not
undo an approval or fail a task. The outcomes (and the audit trail) say what failed.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airgate.core.spec import AlertTarget, ModelSpec

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

ACTOR = "airflow"
MAX_ERROR = 500
# The governance events a notice is sent for (the ``kind`` of notify()); each is one audit event per notifier.
GOVERNANCE_KINDS = (
    "approval_requested",
    "approval_expiring",
    "approval_decided",
    "approval_expired",
    "break_glass",
    "rollback",
    "revoked",
)


class AlertError(RuntimeError):
    """Some notifier failed, or an alert could not be audited (the others were still tried)."""


@dataclass(frozen=True)
class AlertOutcome:
    """What happened to one notifier for one alert: sent or not (with the error), and whether it was audited."""

    kind: str
    notifier: str
    ok: bool
    error: str | None = None
    audited: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- delivering


def resolve(path: str) -> Any:
    """The object a dotted path names (``package.module.Name``), imported now (never at DAG parse)."""
    module_path, _, name = path.rpartition(".")
    if not module_path:
        raise ImportError(f"{path} doesn't look like a module path")
    module = importlib.import_module(module_path)
    try:
        return getattr(module, name)
    except AttributeError as exc:
        raise ImportError(f'Module "{module_path}" does not define a "{name}" attribute/class') from exc


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
    positional = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )
    return any(p.kind in positional for p in params.values())


def _notifier_base(notifier: Any) -> Any:
    """Airflow's BaseNotifier when ``notifier`` is one, found in its class hierarchy (no Airflow import)."""
    for cls in type(notifier).__mro__:
        if cls.__name__ == "BaseNotifier" and cls.__module__.startswith("airflow."):
            return cls
    return None


def _call_notifier(notifier: Any, context: dict[str, Any]) -> None:
    """Call a notifier instance the way Airflow would: a BaseNotifier renders its templates, then ``notify``
    (or ``async_notify`` when that is all it implements); any other callable gets the context."""
    base = _notifier_base(notifier)
    if base is not None:
        cls = type(notifier)
        if cls.notify is base.notify and cls.async_notify is not base.async_notify:
            notifier.context = context

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


# ---------------------------------------------------------------------------------------------- sending


def audit_event(
    wh: list[Engine], model: str, event_type: str, entity: dict[str, Any], details: dict[str, Any]
) -> bool:
    """Write one audit event; the engine is resolved on first use and reused. False (and logged) if impossible."""
    try:
        if not wh:
            from airgate.core.settings import warehouse_engine

            wh.append(warehouse_engine())
        from airgate.core import audit

        audit.record(wh[0], actor=ACTOR, event_type=event_type, model=model, entity=entity, details=details)
        return True
    except Exception:  # noqa: BLE001 - an alert is still sent when the audit log cannot be reached
        log.exception("airgate: could not write the %s audit event for %s", event_type, model)
        return False


@dataclass(frozen=True)
class Alert:
    """One alert to send: what the notifiers see as ``airgate_alert`` and what the audit events say."""

    model: str
    kind: str
    message: str
    details: Mapping[str, Any]
    entity: Mapping[str, Any]

    def payload(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "kind": self.kind,
            "message": self.message,
            "details": dict(self.details),
        }


def send(
    alert: Alert, targets: list[AlertTarget], context: Mapping[str, Any] | None, wh: list[Engine]
) -> list[AlertOutcome]:
    """Call every target with its own copy of the context and audit each call. Never raises."""
    outcomes: list[AlertOutcome] = []
    for target in targets:
        ctx = dict(context or {})
        ctx["airgate_alert"] = alert.payload()
        error: str | None = None
        try:
            deliver(target, ctx)
            log.warning(
                "airgate alert %s for %s sent through %s: %s",
                alert.kind,
                alert.model,
                target.notifier,
                alert.message,
            )
        except Exception as exc:  # noqa: BLE001 - one notifier failing must not stop the others
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
            log.exception(
                "airgate alert %s for %s: notifier %s failed", alert.kind, alert.model, target.notifier
            )
        audited = audit_event(
            wh,
            alert.model,
            "alert_failed" if error else "alert_sent",
            {**dict(alert.entity), "kind": alert.kind, "notifier": target.notifier},
            {"message": alert.message, **({"error": error} if error else {})},
        )
        outcomes.append(AlertOutcome(alert.kind, target.notifier, error is None, error, audited))
    return outcomes


def _jsonable(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """Details as plain JSON values (datetimes as ISO text), so the audit row and the notifiers can store them."""
    import json

    return dict(json.loads(json.dumps(dict(details or {}), default=str)))


def notify(
    engine: Engine | None,
    spec: ModelSpec,
    kind: str,
    message: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Tell ``spec.alerts.on_governance`` about one governance event (``kind``: one of GOVERNANCE_KINDS).

    Never raises, by design: the event (a decision, a rollback) is already recorded, and its notice failing must
    not undo it. ``details`` may carry ``request_id``/``version``/``actor``; those become the audit entity."""
    try:
        targets = list(spec.alerts.on_governance)
        if not targets:
            return
        plain = _jsonable(details)
        entity = {
            k: plain[k] for k in ("request_id", "version", "training_run_id") if plain.get(k) is not None
        }
        alert = Alert(spec.name, kind, message, plain, {**entity, "category": "governance"})
        send(alert, targets, {"airgate_governance": True}, [engine] if engine is not None else [])
    except Exception:  # noqa: BLE001 - a notice never breaks the governance action that sent it
        log.exception("airgate: governance notice %s for %s could not be sent", kind, spec.name)
