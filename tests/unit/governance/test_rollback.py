"""Four-eyes rollback (airgate.governance.rollbacks): one approver proposes, a different eligible approver confirms,
and only then does production change; break-glass stays single-person but is marked and notified."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airgate.core import audit
from airgate.core.hashing import canonical_sha256
from airgate.core.run_identity import RunIdentity, record_identity
from airgate.core.spec import AlertTarget, ModelSpec
from airgate.core.warehouse import utcnow
from airgate.governance import promotion
from airgate.governance.promotion import Actor, GovernanceError

APPROVER = Actor("approver", frozenset({"op"}))
ADMIN = Actor("admin", frozenset({"admin"}))
OWNER = Actor("trainer", frozenset({"op"}))  # the shipped spec's owner, an approver in general
WHY = "v2 miscalibrated on cohort B"


def _with(spec: ModelSpec, users: list[str] | None = None, **approval: Any) -> ModelSpec:
    """The spec with more approver users and/or other approval settings."""
    rules = spec.approval.approvers
    if users:
        rules = rules.model_copy(update={"users": sorted({*rules.users, *users})})
    return spec.model_copy(
        update={"approval": spec.approval.model_copy(update={"approvers": rules, **approval})}
    )


class Alias:
    """The MLflow ``champion`` alias as the rules move it (the real MLflow path is tested in test_promotion.py)."""

    def __init__(self) -> None:
        self.version: str | None = None

    def move(self, model: str, version: str) -> None:
        self.version = version

    def remove(self, model: str) -> None:
        self.version = None


def _approve(engine, spec, alias: Alias, version: str, requested_by: str) -> dict:  # type: ignore[no-untyped-def]
    evidence = {"candidate": "m", "model_version": version}
    rid = promotion.open_request(
        engine, spec, version, f"tr-{version}", evidence, canonical_sha256(evidence), requested_by
    )
    return promotion.decide(
        engine, spec, rid, APPROVER, "approve", "ok", canonical_sha256(evidence), alias.move
    )


@pytest.fixture
def alias() -> Alias:
    return Alias()


@pytest.fixture
def versions(engine, spec, alias: Alias) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    """v1 requested by carol and approved, then v2 (requested by frank, its run triggered by erin) approved: v2 is
    the champion, v1 an earlier approved version."""
    first = _approve(engine, spec, alias, "1", "carol")
    record_identity(
        engine, RunIdentity("tr-2", spec.name, "train", "manual__x", "manual", "erin", spec.owner, "lv")
    )
    second = _approve(engine, spec, alias, "2", "frank")
    assert alias.version == "2"
    return first, second


def _refused(fn, *args, **kw) -> GovernanceError:  # type: ignore[no-untyped-def]
    with pytest.raises(GovernanceError) as err:
        fn(*args, **kw)
    return err.value


def _champion(engine, spec) -> str | None:  # type: ignore[no-untyped-def]
    champ = promotion.current_champion(engine, spec.name)
    return champ.version if champ else None


def test_owner_alone_cannot_roll_back(engine, spec, alias, versions) -> None:  # type: ignore[no-untyped-def]
    first, second = versions
    out = promotion.rollback(engine, spec, OWNER, first["model_version"], WHY, alias.move)
    assert out["status"] == "pending" and out["proposed_by"] == "trainer"  # the owner may propose...
    assert alias.version == second["model_version"]  # ...but nothing moved
    assert _champion(engine, spec) == second["model_version"]
    assert [r["action"] for r in promotion.ledger(engine, spec.name)] == ["promote", "promote"]
    assert "trainer" in out["may_confirm"]["excluded"] and "trainer" not in out["may_confirm"]["users"]
    err = _refused(promotion.confirm_rollback, engine, spec, out["proposal_id"], OWNER, alias.move)
    assert (err.status, err.code) == (403, "separation_of_duties")
    other = promotion.propose_rollback(engine, spec, APPROVER, first["model_version"], WHY)
    err = _refused(promotion.confirm_rollback, engine, spec, other["proposal_id"], OWNER, alias.move)
    assert (err.status, err.code) == (403, "separation_of_duties") and "owns" in err.message
    assert alias.version == second["model_version"]


def test_proposer_cannot_confirm_and_the_page_says_why(engine, spec, alias, versions) -> None:  # type: ignore[no-untyped-def]
    first, _ = versions
    p = promotion.propose_rollback(engine, spec, APPROVER, first["model_version"], WHY)
    [shown] = promotion.rollback_proposals(engine, spec, APPROVER)
    err = _refused(promotion.confirm_rollback, engine, spec, p["proposal_id"], APPROVER, alias.move)
    assert (err.status, err.code) == (403, "separation_of_duties")
    assert (shown["can_confirm"], shown["cannot_confirm"]) == (
        False,
        err.message,
    )  # one rule, page and server
    assert promotion.rollback_proposals(engine, spec, ADMIN)[0]["can_confirm"] is True
    refused = audit.events(engine, event_type="rollback_refused")
    assert [(e["actor"], e["details"]["stage"], e["details"]["code"]) for e in refused] == [
        ("approver", "confirm", "separation_of_duties")
    ]


@pytest.mark.parametrize(
    "who",
    ["carol", "frank", "erin"],  # requested v1 (the target); requested v2 (the champion); triggered v2's run
)
def test_trainer_of_either_version_cannot_confirm(engine, spec, alias, versions, who: str) -> None:  # type: ignore[no-untyped-def]
    first, second = versions
    governed = _with(spec, users=["carol", "frank", "erin"])
    p = promotion.propose_rollback(engine, governed, APPROVER, first["model_version"], WHY)
    assert who in p["may_confirm"]["excluded"]
    actor = Actor(who, frozenset({"op"}))
    err = _refused(promotion.confirm_rollback, engine, governed, p["proposal_id"], actor, alias.move)
    assert (err.status, err.code) == (403, "separation_of_duties") and "trained" in err.message
    assert alias.version == second["model_version"]


def test_a_second_eligible_approver_confirms_and_it_takes_effect(engine, spec, alias, versions) -> None:  # type: ignore[no-untyped-def]
    first, second = versions
    p = promotion.propose_rollback(engine, spec, APPROVER, first["model_version"], WHY)
    out = promotion.confirm_rollback(engine, spec, p["proposal_id"], ADMIN, alias.move, comment="agreed")
    assert (out["status"], out["confirmed_by"], out["from_version"], out["to_version"]) == (
        "confirmed",
        ["admin"],
        second["model_version"],
        first["model_version"],
    )
    assert alias.version == first["model_version"]
    champ = promotion.current_champion(engine, spec.name)
    assert champ is not None and (champ.version, champ.approval_id, champ.action) == (
        first["model_version"],
        first["request_id"],
        "rollback",
    )
    rows = promotion.ledger(engine, spec.name)
    assert [r["action"] for r in rows] == ["promote", "promote", "rollback"] and rows[-1]["id"] == out[
        "ledger_id"
    ]
    ev = audit.events(engine, event_type="rollback")[-1]
    assert ev["details"]["proposed_by"] == "approver" and ev["details"]["confirmed_by"] == ["admin"]
    assert ev["details"]["justification"] == WHY and ev["entity"]["ledger_id"] == out["ledger_id"]
    kinds = [e["event_type"] for e in audit.events(engine)]
    assert kinds[-3:] == ["rollback_proposed", "rollback_confirmation", "rollback"]
    assert audit.verify_chain(engine).ok
    assert promotion.rollback_proposals(engine, spec, ADMIN) == []  # no longer open
    again = _refused(
        promotion.confirm_rollback,
        engine,
        spec,
        p["proposal_id"],
        Actor("dora", frozenset({"admin"})),
        alias.move,
    )
    assert again.code == "not_pending"


def test_quorum_needs_that_many_distinct_confirmers(engine, spec, alias, versions) -> None:  # type: ignore[no-untyped-def]
    first, second = versions
    governed = _with(spec, quorum=2)
    p = promotion.propose_rollback(engine, governed, APPROVER, first["model_version"], WHY)
    one = promotion.confirm_rollback(engine, governed, p["proposal_id"], ADMIN, alias.move)
    assert (one["status"], one["confirmations"], one["ledger_id"]) == ("pending", 1, None)
    assert alias.version == second["model_version"]
    err = _refused(promotion.confirm_rollback, engine, governed, p["proposal_id"], ADMIN, alias.move)
    assert (err.status, err.code) == (409, "already_confirmed")
    dora = Actor("dora", frozenset({"admin"}))
    two = promotion.confirm_rollback(engine, governed, p["proposal_id"], dora, alias.move)
    assert (two["status"], two["confirmed_by"]) == ("confirmed", ["admin", "dora"])
    assert alias.version == first["model_version"]


def test_an_expired_proposal_cannot_be_confirmed(engine, spec, alias, versions) -> None:  # type: ignore[no-untyped-def]
    first, second = versions
    then = utcnow() - timedelta(hours=spec.approval.expires_after_hours + 1)
    p = promotion.propose_rollback(engine, spec, APPROVER, first["model_version"], WHY, now=then)
    [shown] = promotion.rollback_proposals(engine, spec, ADMIN)
    assert (shown["status"], shown["can_confirm"], shown["cannot_confirm_code"]) == (
        "expired",
        False,
        "expired",
    )
    err = _refused(promotion.confirm_rollback, engine, spec, p["proposal_id"], ADMIN, alias.move)
    assert (err.status, err.code) == (409, "expired")
    assert alias.version == second["model_version"]
    assert promotion.rollback_proposals(engine, spec, ADMIN) == []  # the expiry was persisted
    closed = audit.events(engine, event_type="rollback_proposal_closed")
    assert [e["details"]["status"] for e in closed] == ["expired"]


def test_a_proposal_whose_champion_changed_is_refused(engine, spec, alias, versions) -> None:  # type: ignore[no-untyped-def]
    first, second = versions
    p = promotion.propose_rollback(engine, spec, APPROVER, first["model_version"], WHY)
    promotion.revoke(
        engine,
        spec,
        ADMIN,
        second["model_version"],
        "leaking a protected attribute",
        alias.remove,
    )
    err = _refused(promotion.confirm_rollback, engine, spec, p["proposal_id"], ADMIN, alias.move)
    assert (err.status, err.code) == (409, "champion_changed")
    assert _champion(engine, spec) is None and alias.version is None
    assert promotion.rollback_proposals(engine, spec, ADMIN) == []  # superseded
    # proposing again against the champion as it is now works (here: none, after the revocation)
    again = promotion.propose_rollback(
        engine, spec, APPROVER, first["model_version"], "restore service on v1"
    )
    assert again["from_version"] is None
    promotion.confirm_rollback(engine, spec, again["proposal_id"], ADMIN, alias.move)
    assert alias.version == first["model_version"]


def _notified(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    )


def test_break_glass_is_marked_and_notified(engine, spec, alias, versions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first, second = versions
    log = tmp_path / "governance.jsonl"
    target = AlertTarget(notifier="airgate.notifiers.LogNotifier", kwargs={"path": str(log)})
    loud = spec.model_copy(update={"alerts": spec.alerts.model_copy(update={"on_governance": [target]})})
    promotion.revoke(
        engine,
        loud,
        ADMIN,
        second["model_version"],
        "leaking a protected attribute",
        alias.remove,
    )
    ev = audit.events(engine, event_type="revocation")[-1]
    assert ev["details"]["severity"] == "break_glass"
    assert [n["kind"] for n in _notified(log)] == ["break_glass"]
    assert "leaking a protected attribute" in _notified(log)[0]["message"]
    sent = audit.events(engine, event_type="alert_sent")
    assert [e["entity"]["kind"] for e in sent] == ["break_glass"]
    # a rollback is notified when proposed and when it takes effect
    p = promotion.propose_rollback(engine, loud, APPROVER, first["model_version"], "restore service on v1")
    promotion.confirm_rollback(engine, loud, p["proposal_id"], ADMIN, alias.move)
    assert [n["kind"] for n in _notified(log)] == ["break_glass", "rollback_proposed", "rollback_confirmed"]
    assert audit.verify_chain(engine).ok
