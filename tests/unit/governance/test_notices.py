"""Governance notices: every notifier of ``alerts.on_governance`` gets its turn, each send is audited, and a
broken notifier never raises into the governance action that sent the notice."""

from __future__ import annotations

import json
from pathlib import Path

from airgate.core import audit
from airgate.core.spec import AlertTarget, ModelSpec
from airgate.governance import notices


def _with(spec: ModelSpec, *targets: AlertTarget) -> ModelSpec:
    return spec.model_copy(update={"alerts": spec.alerts.model_copy(update={"on_governance": list(targets)})})


def test_a_notice_reaches_the_log_notifier_and_is_audited(sqlite_engine, spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "governance.jsonl"
    gspec = _with(spec, AlertTarget(notifier="airgate.notifiers.LogNotifier", kwargs={"path": str(out)}))
    notices.notify(
        sqlite_engine, gspec, "break_glass", "v3 revoked by alice", {"version": "3", "actor": "alice"}
    )
    line = json.loads(out.read_text().strip())
    assert (line["kind"], line["model"], line["message"]) == ("break_glass", spec.name, "v3 revoked by alice")
    sent = audit.events(sqlite_engine, event_type="alert_sent")
    assert [(e["entity"]["kind"], e["entity"]["version"], e["entity"]["category"]) for e in sent] == [
        ("break_glass", "3", "governance")
    ]


def test_a_broken_notifier_is_audited_and_the_others_still_run(sqlite_engine, spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "governance.jsonl"
    gspec = _with(
        spec,
        AlertTarget(notifier="airgate.no_such_module.Notifier"),
        AlertTarget(notifier="airgate.notifiers.LogNotifier", kwargs={"path": str(out)}),
    )
    notices.notify(
        sqlite_engine, gspec, "approval_decided", "apr-1 approved", {"request_id": "apr-1"}
    )  # no raise
    assert out.exists()
    failed = audit.events(sqlite_engine, event_type="alert_failed")
    assert len(failed) == 1 and failed[0]["entity"]["notifier"] == "airgate.no_such_module.Notifier"
    assert "ModuleNotFoundError" in failed[0]["details"]["error"]
    assert len(audit.events(sqlite_engine, event_type="alert_sent")) == 1


def test_a_notice_never_raises_even_when_the_audit_log_is_unreachable(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    broken = create_engine(f"sqlite:///{tmp_path / 'missing' / 'nowhere.db'}")
    gspec = _with(spec, AlertTarget(notifier="airgate.notifiers.LogNotifier", kwargs={"path": None}))
    notices.notify(broken, gspec, "rollback", "rolled back", {"when": tmp_path})  # logged, not raised


def test_no_governance_notifier_sends_nothing(sqlite_engine, spec) -> None:  # type: ignore[no-untyped-def]
    notices.notify(sqlite_engine, spec, "approval_requested", "opened", {})
    assert audit.events(sqlite_engine, event_type="alert_sent") == []


def test_the_spec_names_governance_notifiers_like_the_other_alerts(spec) -> None:  # type: ignore[no-untyped-def]
    target = AlertTarget(notifier="airgate.notifiers.LogNotifier")
    assert _with(spec, target).alerts.on_governance == [target]
    assert spec.alerts.expiry_warning_fraction == 0.1
