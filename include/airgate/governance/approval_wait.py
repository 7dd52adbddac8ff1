"""What the train DAG's ``await_approval`` step waits for, decided from the warehouse alone.

The step finds its request by the training run's id, which it derives from its own dag run (never from an XCom a
user can edit), reads the request's stored status and expiry, and :func:`judge` turns that into one typed verdict:
keep waiting (until when), warn that the request is about to expire, or the decision (approved, rejected,
superseded, expired). The rules themselves (quorum, separation of duties, expiry) stay in ``decisions``: this only
reads their result, so the DAG can never count as approved what the governance rules did not approve. A pending
request past its ``expires_at`` is expired here too, whether or not anyone tried to decide it since.

No Airflow here: the trigger (orchestration) runs :func:`check` in a thread of the triggerer, the run tab (web)
shows :func:`request_for_run`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate.core.warehouse import approval_requests, as_utc, utcnow

Outcome = Literal["wait", "warn", "approved", "rejected", "superseded", "expired", "missing"]
# Verdicts after which the step stops waiting; "warn" notifies, then waits again.
FINAL: frozenset[str] = frozenset({"approved", "rejected", "superseded", "expired", "missing"})


@dataclass(frozen=True)
class RequestState:
    """The stored facts about one approval request that the wait depends on."""

    request_id: str
    model_version: str
    status: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    """What the wait does next. ``until``: for "wait", when to look again at the latest (the warning time, else
    the expiry); ``reason``: one line for the task log and the notices."""

    outcome: Outcome
    reason: str
    request_id: str | None = None
    model_version: str | None = None
    until: datetime | None = None
    expires_at: datetime | None = None

    @property
    def final(self) -> bool:
        return self.outcome in FINAL

    def to_event(self) -> dict[str, Any]:
        """JSON for a TriggerEvent (datetimes as ISO text)."""
        d = asdict(self)
        for k in ("until", "expires_at"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Verdict:
        def when(value: Any) -> datetime | None:
            return as_utc(datetime.fromisoformat(value)) if value else None

        return cls(
            outcome=event["outcome"],
            reason=str(event.get("reason", "")),
            request_id=event.get("request_id"),
            model_version=event.get("model_version"),
            until=when(event.get("until")),
            expires_at=when(event.get("expires_at")),
        )


def request_for_run(engine: Engine, training_run_id: str) -> RequestState | None:
    """The approval request opened for a training run (the newest, should there ever be more), or None."""
    q = (
        select(approval_requests)
        .where(approval_requests.c.training_run_id == training_run_id)
        .order_by(approval_requests.c.created_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        r = conn.execute(q).first()
    if r is None:
        return None
    created, expires = as_utc(r.created_at), as_utc(r.expires_at)
    assert created is not None and expires is not None  # both NOT NULL
    return RequestState(r.id, str(r.model_version), r.status, created, expires, as_utc(r.decided_at))


def warning_time(state: RequestState, fraction: float) -> datetime:
    """When the "about to expire" notice is due: ``fraction`` of the request's lifetime before its expiry."""
    lifetime = state.expires_at - state.created_at
    return state.expires_at - timedelta(seconds=lifetime.total_seconds() * fraction)


def _about(state: RequestState, outcome: Outcome, reason: str, until: datetime | None = None) -> Verdict:
    return Verdict(outcome, reason, state.request_id, state.model_version, until, state.expires_at)


def judge(
    state: RequestState | None,
    now: datetime,
    *,
    warning_fraction: float,
    warned: bool,
    training_run_id: str = "",
) -> Verdict:
    """The verdict for the request as stored now. ``warned``: the expiry notice was already sent for this wait."""
    if state is None:
        return Verdict("missing", f"no approval request for training run {training_run_id or '?'}")
    if state.status == "pending" and state.expires_at <= now:
        return _about(
            state, "expired", f"request {state.request_id} expired at {state.expires_at.isoformat()}"
        )
    if state.status != "pending":
        return _decided(state)
    warn_at = warning_time(state, warning_fraction)
    if not warned and warn_at <= now:
        return _about(
            state, "warn", f"request {state.request_id} expires in {_human(state.expires_at - now)}"
        )
    until = state.expires_at if warned or warn_at <= now else warn_at
    return _about(state, "wait", f"request {state.request_id} is pending", until)


def _decided(state: RequestState) -> Verdict:
    rid = state.request_id
    if state.status == "approved":
        return _about(state, "approved", f"request {rid} approved: v{state.model_version} is champion")
    if state.status == "rejected":
        return _about(state, "rejected", f"request {rid} was rejected")
    if state.status == "expired":
        return _about(state, "expired", f"request {rid} expired at {state.expires_at.isoformat()}")
    # superseded (a newer request for the model), or any status a later rule adds: not an approval
    return _about(state, "superseded", f"request {rid} is {state.status}, not approved")


def _human(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def check(
    engine: Engine,
    training_run_id: str,
    *,
    warning_fraction: float,
    warned: bool,
    now: datetime | None = None,
) -> Verdict:
    """Read the run's request and judge it (the trigger's poll, run in a thread)."""
    state = request_for_run(engine, training_run_id)
    return judge(
        state,
        now or utcnow(),
        warning_fraction=warning_fraction,
        warned=warned,
        training_run_id=training_run_id,
    )
