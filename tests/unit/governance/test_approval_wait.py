"""The train DAG's wait for approval: the verdict comes from the stored request alone (status, expiry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airgate.core.warehouse import approval_requests, utcnow
from airgate.governance import approval_wait
from airgate.governance.approval_wait import RequestState, Verdict, judge

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _state(status: str = "pending", hours: float = 10) -> RequestState:
    return RequestState("apr-1", "3", status, T0, T0 + timedelta(hours=hours))


def test_pending_waits_until_the_warning_time_then_warns_once_then_waits_for_expiry() -> None:
    st = _state()
    early = judge(st, T0 + timedelta(hours=1), warning_fraction=0.1, warned=False)
    assert (early.outcome, early.until) == ("wait", T0 + timedelta(hours=9))
    late = judge(st, T0 + timedelta(hours=9, minutes=30), warning_fraction=0.1, warned=False)
    assert late.outcome == "warn" and "30 min" in late.reason and not late.final
    after = judge(st, T0 + timedelta(hours=9, minutes=30), warning_fraction=0.1, warned=True)
    assert (after.outcome, after.until) == ("wait", st.expires_at)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("approved", "approved"),
        ("rejected", "rejected"),
        ("expired", "expired"),
        ("superseded", "superseded"),
    ],
)
def test_a_stored_decision_ends_the_wait(status: str, outcome: str) -> None:
    v = judge(_state(status), T0, warning_fraction=0.1, warned=False)
    assert v.outcome == outcome and v.final and v.request_id == "apr-1" and v.model_version == "3"


def test_pending_past_its_expiry_is_expired_never_approved() -> None:
    v = judge(_state(), T0 + timedelta(hours=10), warning_fraction=0.1, warned=True)
    assert v.outcome == "expired" and v.final


def test_no_request_is_missing() -> None:
    v = judge(None, T0, warning_fraction=0.1, warned=False, training_run_id="tr-x")
    assert v.outcome == "missing" and "tr-x" in v.reason


def test_the_verdict_survives_a_trigger_event() -> None:
    v = judge(_state(), T0, warning_fraction=0.1, warned=False)
    assert Verdict.from_event(v.to_event()) == v


def _insert(engine, training_run_id: str, status: str, created: datetime, rid: str, version: str) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(
            approval_requests.insert().values(
                id=rid,
                model="m",
                model_version=version,
                training_run_id=training_run_id,
                evidence_hash="h" * 64,
                evidence={},
                requested_by="carol",
                owner="trainer",
                quorum=1,
                status=status,
                created_at=created,
                expires_at=created + timedelta(hours=1),
            )
        )


def test_the_request_is_found_by_the_runs_training_run_id(engine) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    _insert(engine, "tr-m-other", "approved", now, "apr-other", "1")
    assert approval_wait.request_for_run(engine, "tr-m-run") is None
    _insert(engine, "tr-m-run", "pending", now - timedelta(hours=2), "apr-run", "2")
    st = approval_wait.request_for_run(engine, "tr-m-run")
    assert st is not None and (st.request_id, st.model_version, st.status) == ("apr-run", "2", "pending")
    # stored as pending, but past its expiry: the wait ends as expired
    assert approval_wait.check(engine, "tr-m-run", warning_fraction=0.1, warned=False).outcome == "expired"
    assert approval_wait.check(engine, "tr-m-other", warning_fraction=0.1, warned=False).outcome == "approved"
