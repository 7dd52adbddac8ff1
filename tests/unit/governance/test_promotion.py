"""Approval rules, enforced by airgate.governance.promotion without any server: each rule has a test."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from airgate.core import audit, registry
from airgate.core.warehouse import approval_requests, utcnow
from airgate.governance import promotion
from airgate.governance.promotion import Actor, GovernanceError
from tests.helpers import prepare_data, roll_back, second_version, train_to_request

APPROVER = Actor("approver", frozenset({"op"}))


@pytest.fixture
def request_id(engine, spec, small_sim, mlflow_cfg, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    return train_to_request(engine, spec, mlflow_cfg, tmp_path, labeled, trained_by="carol")[
        "approval_request_id"
    ]


def _decide(engine, spec, cfg, rid, actor=APPROVER, decision="approve", comment="ok", evidence=None, **kw):  # type: ignore[no-untyped-def]
    req = promotion.get_request(engine, rid)
    return promotion.decide(
        engine,
        spec,
        rid,
        actor,
        decision,
        comment,
        evidence or req["evidence_hash"],
        lambda m, v: registry.set_alias(cfg, m, v),
        **kw,
    )


def _refusal(engine, spec, cfg, rid, **kw) -> GovernanceError:  # type: ignore[no-untyped-def]
    with pytest.raises(GovernanceError) as err:
        _decide(engine, spec, cfg, rid, **kw)
    return err.value


def test_approval_promotes_and_moves_the_alias(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    out = _decide(engine, spec, mlflow_cfg, request_id)
    assert out["status"] == "approved"
    assert registry.alias_version(mlflow_cfg, spec.name) == out["model_version"]
    ledger = promotion.ledger(engine, spec.name)
    assert [(r["action"], r["from_version"], r["to_version"], r["approval_id"]) for r in ledger] == [
        ("promote", None, out["model_version"], request_id)
    ]
    assert [e["event_type"] for e in audit.events(engine)][-2:] == ["decision", "promotion"]


def test_non_approver_is_refused(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    err = _refusal(engine, spec, mlflow_cfg, request_id, actor=Actor("viewer", frozenset({"viewer"})))
    assert (err.status, err.code) == (403, "not_approver")


def test_role_from_spec_grants_approval(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    out = _decide(engine, spec, mlflow_cfg, request_id, actor=Actor("someadmin", frozenset({"admin"})))
    assert out["status"] == "approved"


@pytest.mark.parametrize("who", ["carol", "trainer"])  # the run's trainer, and the spec's owner
def test_separation_of_duties(engine, spec, mlflow_cfg, request_id, who: str) -> None:  # type: ignore[no-untyped-def]
    spec2 = spec.model_copy(
        update={
            "approval": spec.approval.model_copy(
                update={
                    "approvers": spec.approval.approvers.model_copy(
                        update={"users": ["carol", "trainer", "approver"]}
                    )
                }
            )
        }
    )
    err = _refusal(engine, spec2, mlflow_cfg, request_id, actor=Actor(who, frozenset({"op"})))
    assert (err.status, err.code) == (403, "separation_of_duties")


def test_changed_evidence_is_refused(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    err = _refusal(engine, spec, mlflow_cfg, request_id, evidence="f" * 64)
    assert (err.status, err.code) == (409, "evidence_changed")
    req = promotion.get_request(engine, request_id)
    ev = dict(req["evidence"], approvable=True, candidate="something else")
    with engine.begin() as conn:  # evidence edited behind the request's back
        conn.execute(
            update(approval_requests).where(approval_requests.c.id == request_id).values(evidence=ev)
        )
    err = _refusal(engine, spec, mlflow_cfg, request_id)
    assert err.code == "evidence_changed"


def test_comment_is_required(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    assert _refusal(engine, spec, mlflow_cfg, request_id, comment="   ").code == "comment_required"


def test_expired_request_is_never_approved(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    err = _refusal(engine, spec, mlflow_cfg, request_id, now=utcnow() + timedelta(hours=73))
    assert (err.status, err.code) == (409, "expired")
    assert promotion.list_requests(engine)[0]["status"] == "expired"
    assert promotion.current_champion(engine, spec.name) is None


def test_quorum_and_single_reject(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(update(approval_requests).values(quorum=2))
    first = _decide(engine, spec, mlflow_cfg, request_id)
    assert first["status"] == "pending" and first["approvals"] == 1
    assert _refusal(engine, spec, mlflow_cfg, request_id).code == "already_decided"  # no double vote
    rejected = _decide(
        engine,
        spec,
        mlflow_cfg,
        request_id,
        actor=Actor("admin", frozenset({"admin"})),
        decision="reject",
        comment="slice gap too large",
    )
    assert rejected["status"] == "rejected"
    assert (
        _refusal(engine, spec, mlflow_cfg, request_id, actor=Actor("boss", frozenset({"admin"}))).code
        == "not_pending"
    )
    assert promotion.current_champion(engine, spec.name) is None


def test_alias_failure_rolls_the_decision_back(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    req = promotion.get_request(engine, request_id)

    def broken(model: str, version: str) -> None:
        raise RuntimeError("MLflow unreachable")

    with pytest.raises(RuntimeError):
        promotion.decide(engine, spec, request_id, APPROVER, "approve", "ok", req["evidence_hash"], broken)
    assert promotion.get_request(engine, request_id)["status"] == "pending"
    assert promotion.ledger(engine, spec.name) == []
    assert audit.verify_chain(engine).ok


def test_concurrent_decisions_give_one_final_state(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    """100 approvers decide at once, approve and reject mixed, on SQLite and PostgreSQL (the ``engine`` fixture):
    exactly one decision settles the request and every other attempt is refused and audited."""
    actors = [Actor(f"admin{i}", frozenset({"admin"})) for i in range(100)]
    results: list[object] = []
    barrier = threading.Barrier(len(actors))

    def go(a: Actor, decision: str) -> None:
        barrier.wait()
        try:
            results.append(_decide(engine, spec, mlflow_cfg, request_id, actor=a, decision=decision))
        except GovernanceError as exc:
            results.append(exc)

    threads = [
        threading.Thread(target=go, args=(a, "approve" if i % 2 else "reject")) for i, a in enumerate(actors)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = [r for r in results if isinstance(r, dict) and r["status"] != "pending"]
    assert len(final) == 1, results
    assert all(
        isinstance(r, GovernanceError) and r.code == "not_pending" for r in results if r is not final[0]
    )
    events = [e["event_type"] for e in audit.events(engine)]
    assert events.count("decision") == 1 and events.count("decision_refused") == len(actors) - 1
    assert audit.verify_chain(engine).ok


ADMIN = Actor("ops-lead", frozenset({"admin"}))


def _mover(cfg):  # type: ignore[no-untyped-def]
    return lambda m, v: registry.set_alias(cfg, m, v)


@pytest.fixture
def two_approved(engine, spec, mlflow_cfg, request_id) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    """v1 approved, then v2 approved: v2 is champion, v1 an earlier approved version."""
    first = _decide(engine, spec, mlflow_cfg, request_id)
    second = _decide(engine, spec, mlflow_cfg, second_version(engine, spec, mlflow_cfg, request_id))
    assert registry.alias_version(mlflow_cfg, spec.name) == second["model_version"] != first["model_version"]
    return first, second


def test_rollback_returns_an_earlier_approved_version(engine, spec, mlflow_cfg, two_approved) -> None:  # type: ignore[no-untyped-def]
    first, second = two_approved
    proposed = promotion.rollback(  # the old single-call name only proposes now
        engine, spec, APPROVER, first["model_version"], "v2 miscalibrated on cohort B", _mover(mlflow_cfg)
    )
    assert proposed["status"] == "pending"
    assert registry.alias_version(mlflow_cfg, spec.name) == second["model_version"]
    out = promotion.confirm_rollback(engine, spec, proposed["proposal_id"], ADMIN, _mover(mlflow_cfg))
    assert (out["status"], out["from_version"], out["to_version"], out["approval_id"]) == (
        "confirmed",
        second["model_version"],
        first["model_version"],
        first["request_id"],
    )
    assert registry.alias_version(mlflow_cfg, spec.name) == first["model_version"]
    champ = promotion.current_champion(engine, spec.name)
    assert champ is not None and (champ.version, champ.approval_id, champ.action) == (
        first["model_version"],
        first["request_id"],
        "rollback",
    )
    assert [r["action"] for r in promotion.ledger(engine, spec.name)] == ["promote", "promote", "rollback"]
    ev = audit.events(engine, event_type="rollback")[-1]
    assert ev["actor"] == "ops-lead" and ev["details"]["justification"] == "v2 miscalibrated on cohort B"
    assert ev["details"]["proposed_by"] == "approver"
    assert audit.verify_chain(engine).ok
    # the rolled-back-to version scores under its original approval; the newer one no longer may
    assert promotion.approved_version(engine, spec.name, first["model_version"]) == first["request_id"]
    assert promotion.approved_version(engine, spec.name, second["model_version"]) is None


@pytest.mark.parametrize(
    ("actor", "version", "why", "code", "status"),
    [
        (Actor("viewer", frozenset({"viewer"})), "1", "a long enough reason", "not_approver", 403),
        (APPROVER, "1", "short", "justification_required", 422),
        (APPROVER, "99", "never approved version", "not_approved", 409),
    ],
)
def test_rollback_refusals_are_audited(engine, spec, actor, version, why, code, status) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GovernanceError) as err:
        promotion.rollback(engine, spec, actor, version, why, lambda m, v: pytest.fail("alias must not move"))
    assert (err.value.code, err.value.status) == (code, status)
    refused = audit.events(engine, event_type="rollback_refused")
    assert [(e["actor"], e["details"]["code"]) for e in refused] == [(actor.username, code)]


def test_rollback_to_the_champion_is_refused(engine, spec, mlflow_cfg, two_approved) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GovernanceError) as err:
        promotion.rollback(
            engine,
            spec,
            APPROVER,
            two_approved[1]["model_version"],
            "already there, oops",
            _mover(mlflow_cfg),
        )
    assert err.value.code == "already_champion"


def test_break_glass_revocation_stops_scoring(engine, spec, mlflow_cfg, two_approved) -> None:  # type: ignore[no-untyped-def]
    from airgate.serving import scoring

    first, second = two_approved
    with pytest.raises(GovernanceError) as err:  # approvers are not break-glass by default
        promotion.revoke(
            engine,
            spec,
            APPROVER,
            second["model_version"],
            "leaking a protected attribute",
            lambda m: pytest.fail("alias must stay"),
        )
    assert (err.value.status, err.value.code) == (403, "not_break_glass")
    with pytest.raises(GovernanceError) as err:
        promotion.revoke(
            engine,
            spec,
            ADMIN,
            first["model_version"],
            "not the champion though",
            lambda m: registry.delete_alias(mlflow_cfg, m),
        )
    assert err.value.code == "not_champion"
    out = promotion.revoke(
        engine,
        spec,
        ADMIN,
        second["model_version"],
        "leaking a protected attribute",
        lambda m: registry.delete_alias(mlflow_cfg, m),
    )
    assert (out["action"], out["from_version"], out["to_version"]) == (
        "revoke",
        second["model_version"],
        None,
    )
    assert registry.alias_version(mlflow_cfg, spec.name) is None
    assert promotion.current_champion(engine, spec.name) is None
    assert promotion.get_request(engine, second["request_id"])["status"] == "revoked"
    with pytest.raises(scoring.NotApproved):  # even if someone points the alias back by hand
        registry.set_alias(mlflow_cfg, spec.name, second["model_version"])
        scoring.resolve_champion(engine, spec, mlflow_cfg)
    with pytest.raises(GovernanceError) as err:  # a revoked version never returns
        promotion.rollback(
            engine, spec, APPROVER, second["model_version"], "bring it back please", _mover(mlflow_cfg)
        )
    assert err.value.code == "not_approved"  # its approval is withdrawn
    back = roll_back(engine, spec, mlflow_cfg, first["model_version"], "restore service on v1")
    assert (
        back["from_version"] is None
        and registry.alias_version(mlflow_cfg, spec.name) == first["model_version"]
    )
    kinds = [e["event_type"] for e in audit.events(engine)]
    assert kinds.count("revocation") == 1 and kinds.count("revocation_refused") == 2
    assert audit.verify_chain(engine).ok


def test_champion_as_of_reads_the_ledger_history(engine, spec, mlflow_cfg, two_approved) -> None:  # type: ignore[no-untyped-def]
    first, second = two_approved
    entries = promotion.ledger(engine, spec.name)
    assert promotion.champion_as_of(engine, spec.name, entries[0]["at"] - timedelta(seconds=1)) is None
    assert (promotion.champion_as_of(engine, spec.name, entries[0]["at"]) or {}).get("version") == first[
        "model_version"
    ]
    assert (promotion.champion_as_of(engine, spec.name, utcnow()) or {}).get("version") == second[
        "model_version"
    ]


def test_why_not_decide_explains_each_rule(engine, spec, request_id) -> None:  # type: ignore[no-untyped-def]
    req = promotion.get_request(engine, request_id)
    assert promotion.why_not_decide(spec, req, APPROVER) is None
    assert "not an approver" in str(promotion.why_not_decide(spec, req, Actor("v", frozenset({"viewer"}))))
    assert "separation of duties" in str(
        promotion.why_not_decide(spec, req, Actor("carol", frozenset({"admin"})))
    )
    assert "expired" in str(
        promotion.why_not_decide(spec, req, APPROVER, now=utcnow() + timedelta(hours=100))
    )


def test_approvers_from_airflow_config_extend_the_spec(spec) -> None:  # type: ignore[no-untyped-def]
    dora = Actor("dora", frozenset({"risk"}))
    assert not promotion.is_approver(spec, dora)
    assert promotion.is_approver(promotion.with_extra_approvers(spec, ["dora"], []), dora)
    assert promotion.is_approver(promotion.with_extra_approvers(spec, [], ["Risk"]), dora)
    assert promotion.with_extra_approvers(spec, [], []) is spec


def _behind_the_back(engine, rid: str) -> None:  # type: ignore[no-untyped-def]
    req = promotion.get_request(engine, rid)
    with engine.begin() as conn:  # the stored bundle no longer matches its hash
        conn.execute(
            update(approval_requests)
            .where(approval_requests.c.id == rid)
            .values(evidence=dict(req["evidence"], candidate="something else"))
        )


LATER = timedelta(hours=100)


@pytest.mark.parametrize(
    ("case", "actor", "later", "code"),
    [
        (
            "trainer approves their own run",
            Actor("carol", frozenset({"admin"})),
            False,
            "separation_of_duties",
        ),
        ("wrong role", Actor("viewer", frozenset({"viewer"})), False, "not_approver"),
        ("expired", APPROVER, True, "expired"),
        ("already decided", APPROVER, False, "already_decided"),
        ("decided by someone else", Actor("boss", frozenset({"admin"})), False, "not_pending"),
        ("evidence changed", APPROVER, False, "evidence_changed"),
    ],
)
def test_the_page_shows_the_refusal_the_server_gives(
    engine,
    spec,
    mlflow_cfg,
    request_id,
    case: str,  # type: ignore[no-untyped-def]
    actor: Actor,
    later: bool,
    code: str,
) -> None:
    """One rule chain: what the request page shows as the reason its buttons are missing is the very refusal
    ``decide`` answers with (same code, status and message), case by case."""
    if case == "already decided":
        with engine.begin() as conn:  # a quorum of two: the request is still pending after the first vote
            conn.execute(
                update(approval_requests).where(approval_requests.c.id == request_id).values(quorum=2)
            )
        assert _decide(engine, spec, mlflow_cfg, request_id)["status"] == "pending"
    if case == "decided by someone else":
        _decide(
            engine,
            spec,
            mlflow_cfg,
            request_id,
            actor=Actor("admin", frozenset({"admin"})),
            decision="reject",
        )
    if case == "evidence changed":
        _behind_the_back(engine, request_id)
    now = utcnow() + (LATER if later else timedelta(0))
    page = promotion.may_decide(spec, promotion.get_request(engine, request_id), actor, now=now)
    server = _refusal(engine, spec, mlflow_cfg, request_id, actor=actor, now=now)
    assert page == promotion.Refusal(server.code, server.status, server.message)
    assert page.code == code
    assert (
        promotion.why_not_decide(spec, promotion.get_request(engine, request_id), actor, now=now) is not None
    )


def test_page_and_server_agree_once_an_expiry_is_persisted(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    later = utcnow() + LATER
    assert _refusal(engine, spec, mlflow_cfg, request_id, now=later).code == "expired"  # persists the expiry
    req = promotion.get_request(engine, request_id)
    assert req["status"] == "expired"
    page = promotion.may_decide(spec, req, APPROVER, now=later)
    server = _refusal(engine, spec, mlflow_cfg, request_id, now=later)
    assert page == promotion.Refusal(server.code, server.status, server.message)
    assert page.code == "not_pending"
    assert promotion.may_decide(spec, promotion.get_request(engine, request_id), APPROVER) is not None
