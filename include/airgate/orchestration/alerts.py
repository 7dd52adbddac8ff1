"""Alerts: a failed task, a missed scoring deadline, a drift or decay alarm call the notifiers the spec names.

The spec names each notifier by its dotted import path (``alerts.on_failure``, ``on_deadline_missed``, ``on_drift``,
``on_decay``). Nothing is imported when the DAGs are parsed: a notifier is resolved when an alert is sent, in the
process that sends it (the task's worker for failures and alarms, the executor's callback process for a missed
deadline). Every notifier gets its own attempt: one that cannot be imported or raises is logged and audited
(``alert_failed``) and the others still run; each one that succeeds is an ``alert_sent`` audit event.

Imported at DAG-parse time (by the DAG factory), so this module imports only the standard library and the spec;
Airflow, the audit log and the warehouse are imported inside the functions that need them.

Notifiers receive the Airflow context (for a missed deadline, the reduced context Airflow's scheduler builds:
``dag_run`` as a JSON mapping and ``deadline``) plus ``airgate_alert``: ``{model, kind, message, details}``, so a
templated notifier can write ``{{ airgate_alert.message }}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airgate.core.spec import ALERT_KINDS, AlertTarget, ModelSpec
from airgate.governance import notices
from airgate.governance.notices import (  # one delivery for every alert, governance notices included
    MAX_ERROR,
    AlertError,
    AlertOutcome,
    resolve,  # noqa: F401 - callers check a notifier path through alerts.resolve
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- sending


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def context_ids(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """dag_id, run_id and task_id from an Airflow task context or the scheduler's deadline context."""
    if not context:
        return {}
    dag_run = context.get("dag_run")
    ti = context.get("ti") or context.get("task_instance")
    ids = {
        "dag_id": _get(dag_run, "dag_id") or _get(context.get("dag"), "dag_id") or _get(ti, "dag_id"),
        "run_id": _get(dag_run, "run_id") or _get(dag_run, "dag_run_id") or _get(ti, "run_id"),
        "task_id": _get(ti, "task_id"),
    }
    map_index = _get(ti, "map_index")
    if isinstance(map_index, int) and map_index >= 0:
        ids["map_index"] = map_index
    return {k: v for k, v in ids.items() if v is not None}


def send(
    model: str,
    kind: str,
    targets: list[AlertTarget],
    context: Mapping[str, Any] | None,
    *,
    message: str,
    details: Mapping[str, Any] | None = None,
    entity: Mapping[str, Any] | None = None,
    engine: Engine | None = None,
) -> list[AlertOutcome]:
    """Call every target with its own copy of the context and audit each call (``notices.send``, shared with the
    governance notices). Never raises: the outcomes say what failed."""
    if kind not in ALERT_KINDS:
        raise ValueError(f"unknown alert kind {kind!r}; one of {list(ALERT_KINDS)}")
    alert = notices.Alert(
        model, kind, message, dict(details or {}), {**context_ids(context), **dict(entity or {})}
    )
    return notices.send(alert, targets, context, [engine] if engine is not None else [])


def _audit(
    wh: list[Engine], model: str, event_type: str, entity: dict[str, Any], details: dict[str, Any]
) -> bool:
    """Write one audit event; the engine is resolved on first use and reused. False (and logged) if impossible."""
    return notices.audit_event(wh, model, event_type, entity, details)


def notify(
    spec: ModelSpec,
    kind: str,
    context: Mapping[str, Any] | None = None,
    *,
    message: str,
    details: Mapping[str, Any] | None = None,
    entity: Mapping[str, Any] | None = None,
    engine: Engine | None = None,
) -> list[AlertOutcome]:
    """Send one alert of ``kind`` (failure, deadline_missed, drift, decay) to the spec's notifiers for it."""
    return send(
        spec.name,
        kind,
        spec.alerts.targets(kind),
        context,
        message=message,
        details=details,
        entity=entity,
        engine=engine,
    )


def _raise_if_failed(outcomes: list[AlertOutcome]) -> None:
    bad = [o for o in outcomes if not o.ok or not o.audited]
    if bad:
        raise AlertError("; ".join(f"{o.notifier}: {o.error or 'not audited'}" for o in bad))


# ---------------------------------------------------------------------------------------------- failures


class FailureAlert:
    """The ``on_failure_callback`` of every task of a model's DAGs (through ``default_args``): Airflow calls it
    once a task has failed for good (after its retries), in the worker, with the task's context."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def __call__(self, context: Mapping[str, Any]) -> None:
        ids = context_ids(context)
        exc = context.get("exception")
        ti = context.get("ti")
        where = ".".join(str(ids[k]) for k in ("dag_id", "task_id") if k in ids) or self.spec.name
        message = f"{where} failed (run {ids.get('run_id', '?')}, try {_get(ti, 'try_number') or '?'})"
        if exc is not None:
            message += f": {type(exc).__name__}: {exc}"[:MAX_ERROR]
        outcomes = notify(
            self.spec,
            "failure",
            context,
            message=message,
            details={"exception": f"{type(exc).__name__}: {exc}"[:MAX_ERROR] if exc else None},
        )
        # Raising shows the failure in the task log ("Failed to run task callback"); every notifier was tried.
        _raise_if_failed(outcomes)

    def __repr__(self) -> str:
        return f"FailureAlert({self.spec.name}: {[t.notifier for t in self.spec.alerts.on_failure]})"


def failure_callbacks(spec: ModelSpec) -> list[Callable[[Mapping[str, Any]], None]]:
    """For ``default_args["on_failure_callback"]``: empty when the spec names no failure notifier."""
    return [FailureAlert(spec)] if spec.alerts.on_failure else []


# ---------------------------------------------------------------------------------------------- the deadline


def deadline_alert(spec: ModelSpec) -> Any:
    """The scoring DAG's Airflow DeadlineAlert, or None when the spec sets no ``scoring.deadline_minutes``.

    A SyncCallback: when the scheduler finds the deadline passed and the run not finished, it hands
    :func:`deadline_missed` to the executor, which imports and calls it with these kwargs and a ``context``. The
    kwargs carry the notifiers themselves, so the callback needs neither the spec files nor the DAG.
    """
    minutes = spec.scoring.deadline_minutes
    if minutes is None:
        return None
    from airflow.sdk.definitions.callback import SyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    reference = (
        DeadlineReference.DAGRUN_QUEUED_AT
        if spec.scoring.deadline_from == "queued_at"
        else DeadlineReference.DAGRUN_LOGICAL_DATE
    )
    kwargs = {
        "model": spec.name,
        "minutes": minutes,
        "reference": spec.scoring.deadline_from,
        "targets": [t.model_dump(mode="json") for t in spec.alerts.on_deadline_missed],
    }
    return DeadlineAlert(
        reference=reference,
        interval=timedelta(minutes=minutes),
        callback=SyncCallback(deadline_missed, kwargs=kwargs),
        name=f"{spec.name} scoring deadline",
    )


def score_dag_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """Extra arguments for the scoring DAG: ``{"deadline": DeadlineAlert}`` when the spec sets a deadline."""
    alert = deadline_alert(spec)
    return {"deadline": alert} if alert is not None else {}


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def deadline_applies(deadline_time: Any, queued_at: Any) -> bool:
    """Whether a missed deadline is a real miss: false only when the run was queued after the deadline passed."""
    due, queued = _as_datetime(deadline_time), _as_datetime(queued_at)
    if due is None or queued is None:
        return True  # not knowing is no reason to stay silent
    if due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    if queued.tzinfo is None:
        queued = queued.replace(tzinfo=UTC)
    return queued <= due


def deadline_missed(
    model: str,
    minutes: int,
    reference: str,
    targets: list[dict[str, Any]],
    context: Mapping[str, Any] | None = None,
    **_: Any,
) -> list[dict[str, Any]]:
    """Airflow's deadline callback for the scoring DAG: audits ``deadline_missed``, then calls the notifiers.

    Raises AlertError (Airflow marks the callback failed) when a notifier failed or an event could not be audited,
    after every notifier was tried."""
    ctx = dict(context or {})
    dag_run = ctx.get("dag_run") or {}
    deadline = ctx.get("deadline") or {}
    ids = context_ids(ctx)
    after = "its logical date" if reference == "logical_date" else "it was queued"
    message = (
        f"{ids.get('dag_id', model)} run {ids.get('run_id', '?')} missed its deadline "
        f"{deadline.get('deadline_time', '?')} ({minutes} min after {after}); state: "
        f"{_get(dag_run, 'state') or '?'}"
    )
    details = {
        "deadline_minutes": minutes,
        "reference": reference,
        "deadline_time": str(deadline.get("deadline_time")) if deadline.get("deadline_time") else None,
        "deadline_id": deadline.get("id"),
        "state": _get(dag_run, "state"),
        "logical_date": str(_get(dag_run, "logical_date")),
        "queued_at": str(_get(dag_run, "queued_at")),
    }
    wh: list[Engine] = []
    if not deadline_applies(deadline.get("deadline_time"), _get(dag_run, "queued_at")):
        # A run created after its deadline had already passed (the tick Airflow starts when a DAG is unpaused, a
        # catch-up or a manual re-run of an old date) could never have met it: on the record, nobody paged.
        reason = (
            "the run was queued after its deadline had passed; the deadline applies only to runs before it"
        )
        _audit(
            wh, model, "deadline_waived", {**ids, "kind": "deadline_missed"}, {"reason": reason, **details}
        )
        log.info("airgate: deadline of %s waived: %s", ids.get("run_id", "?"), reason)
        return []
    missed_audited = _audit(
        wh, model, "deadline_missed", {**ids, "kind": "deadline_missed"}, {"message": message, **details}
    )
    outcomes = send(
        model,
        "deadline_missed",
        [AlertTarget.model_validate(t) for t in targets],
        ctx,
        message=message,
        details=details,
        engine=wh[0] if wh else None,
    )
    log.warning("airgate: %s", message)
    if not missed_audited:
        outcomes.append(AlertOutcome("deadline_missed", "(audit)", True, None, False))
    _raise_if_failed(outcomes)
    return [o.to_dict() for o in outcomes]


# ---------------------------------------------------------------------------------------------- alarms


def notify_alarm(
    spec: ModelSpec, kind: str, verdict: Mapping[str, Any], engine: Engine | None = None
) -> list[dict[str, Any]]:
    """Tell the spec's ``on_drift`` / ``on_decay`` notifiers about a monitoring verdict (``MonitorResult.to_dict()``)
    whose status is ``alarm``; any other verdict sends nothing. Called from a task: the notifiers get its context.

    Never raises: a failed notifier is audited and returned, and the task (e.g. the retraining request) goes on."""
    if verdict.get("status") != "alarm":
        return []
    context: dict[str, Any] = {}
    try:
        from airflow.sdk import get_current_context

        context = dict(get_current_context())
    except Exception:  # noqa: BLE001 - outside a task there is no context to pass on
        context = {}
    message = (
        f"{kind} alarm for {spec.name} version {verdict.get('model_version', '?')}: "
        f"{verdict.get('value')} beyond the threshold {verdict.get('threshold')} "
        f"({'labels and version' if kind == 'decay' else 'scoring run'} {verdict.get('scoring_run_id', '?')})"
    )
    entity = {k: verdict[k] for k in ("scoring_run_id", "model_version") if verdict.get(k) is not None}
    details = {k: verdict.get(k) for k in ("status", "value", "threshold", "report_path")}
    outcomes = notify(spec, kind, context, message=message, details=details, entity=entity, engine=engine)
    return [o.to_dict() for o in outcomes]
