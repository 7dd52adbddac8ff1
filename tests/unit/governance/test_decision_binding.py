"""A decision is checked against what its request was bound to when it opened: the hash in the approval_requested
audit event and on the candidate row, the report files' hashes, the champion it was gated against, the role
quorum and the run's identity record. Older pending requests are superseded; lapsed ones are listed as expired."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import update

from airgate.core import audit, registry
from airgate.core.hashing import canonical_sha256
from airgate.core.run_identity import RunIdentity, record_identity
from airgate.core.spec.sections import Approval, Approvers
from airgate.core.warehouse import approval_requests, utcnow
from airgate.governance import bindings, promotion
from airgate.governance.promotion import Actor, GovernanceError
from tests.helpers import prepare_data, second_version, train_to_request

APPROVER = Actor("approver", frozenset({"op"}))
ADMIN = Actor("ops-lead", frozenset({"admin"}))


@pytest.fixture
def request_id(engine, spec, small_sim, mlflow_cfg, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    return train_to_request(engine, spec, mlflow_cfg, tmp_path, labeled, trained_by="carol")[
        "approval_request_id"
    ]


def _decide(engine, spec, cfg, rid, actor=APPROVER, decision="approve", evidence=None):  # type: ignore[no-untyped-def]
    req = promotion.get_request(engine, rid)
    return promotion.decide(
        engine,
        spec,
        rid,
        actor,
        decision,
        "reviewed",
        evidence or req["evidence_hash"],
        lambda m, v: registry.set_alias(cfg, m, v),
    )


def _refusal(engine, spec, cfg, rid, **kw) -> GovernanceError:  # type: ignore[no-untyped-def]
    with pytest.raises(GovernanceError) as err:
        _decide(engine, spec, cfg, rid, **kw)
    refused = audit.events(engine, event_type="decision_refused")
    assert refused and refused[-1]["details"]["code"] == err.value.code  # every refusal is audited
    return err.value


def _page_agrees(engine, spec, rid, actor, err: GovernanceError) -> None:  # type: ignore[no-untyped-def]
    page = promotion.may_decide(spec, promotion.get_request(engine, rid), actor)
    assert page == promotion.Refusal(err.code, err.status, err.message)


def test_evidence_rewritten_with_its_own_hash_is_refused(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    req = promotion.get_request(engine, request_id)
    forged = dict(req["evidence"], approvable=True, candidate="something else")
    with engine.begin() as conn:  # bundle and hash rewritten together: they agree with each other
        conn.execute(
            update(approval_requests)
            .where(approval_requests.c.id == request_id)
            .values(evidence=forged, evidence_hash=canonical_sha256(forged))
        )
    err = _refusal(engine, spec, mlflow_cfg, request_id)
    assert (err.status, err.code) == (
        409,
        "evidence_changed",
    ) and "recorded when the request opened" in err.message
    _page_agrees(engine, spec, request_id, APPROVER, err)
    assert promotion.current_champion(engine, spec.name) is None


def test_report_files_are_hashed_at_open_and_a_swapped_one_is_refused(
    engine, spec, mlflow_cfg, request_id
) -> None:  # type: ignore[no-untyped-def]
    facts = bindings.Facts.from_json(promotion.get_request(engine, request_id)["binding"])
    assert {"gate_report.html", "pareto.png"} <= set(facts.artifacts)
    opened = audit.events(engine, event_type="approval_requested")[-1]
    assert opened["details"]["bound"]["artifacts"] == facts.artifacts  # recorded in the audit event too
    assert bindings.recorded_report(facts, "gate_report.html") is not None
    report = Path(facts.artifacts["gate_report.html"]["path"])
    report.write_text(report.read_text() + "<p>all gates passed</p>")  # swapped behind the request's back
    err = _refusal(engine, spec, mlflow_cfg, request_id)
    assert (err.status, err.code) == (409, "evidence_changed") and "gate_report.html" in err.message
    _page_agrees(engine, spec, request_id, APPROVER, err)
    with pytest.raises(GovernanceError) as served:  # the artifact route never serves the swapped file
        bindings.recorded_report(facts, "gate_report.html")
    assert (served.value.status, served.value.code) == (409, "evidence_changed")
    assert "gate_report.html" in served.value.message


def test_a_new_request_supersedes_older_pending_ones(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    newer = second_version(engine, spec, mlflow_cfg, request_id)
    old = promotion.get_request(engine, request_id)
    assert old["status"] == "superseded" and old["binding"]["superseded_by"] == newer
    ev = audit.events(engine, event_type="approval_superseded")
    assert [(e["entity"]["approval_request_id"], e["details"]["superseded_by"]) for e in ev] == [
        (request_id, newer)
    ]
    err = _refusal(engine, spec, mlflow_cfg, request_id)
    assert err.code == "not_pending" and newer in err.message
    assert [r["id"] for r in promotion.list_requests(engine, status="pending")] == [newer]
    assert _decide(engine, spec, mlflow_cfg, newer)["status"] == "approved"


def test_lapsed_requests_are_listed_as_expired_not_pending(engine, spec, request_id) -> None:  # type: ignore[no-untyped-def]
    assert [r["id"] for r in promotion.list_requests(engine, status="pending")] == [request_id]
    with engine.begin() as conn:
        conn.execute(update(approval_requests).values(expires_at=utcnow() - timedelta(minutes=1)))
    assert promotion.list_requests(engine, status="pending") == []
    assert [(r["id"], r["status"]) for r in promotion.list_requests(engine, status="expired")] == [
        (request_id, "expired")
    ]


def test_a_champion_change_since_the_request_opened_is_refused(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    first = _decide(engine, spec, mlflow_cfg, request_id)  # v1 champion
    newer = second_version(engine, spec, mlflow_cfg, request_id)  # gated against v1
    assert promotion.get_request(engine, newer)["binding"]["gated_champion"] == first["model_version"]
    promotion.revoke(
        engine,
        spec,
        ADMIN,
        first["model_version"],
        "leaking a protected attribute",
        lambda m: registry.delete_alias(mlflow_cfg, m),
    )
    err = _refusal(engine, spec, mlflow_cfg, newer)
    assert (err.status, err.code) == (409, "champion_changed")
    assert f"from v{first['model_version']}" in err.message and "re-run the train DAG" in err.message
    _page_agrees(engine, spec, newer, APPROVER, err)


def _with_roles(spec):  # type: ignore[no-untyped-def]
    approval = spec.approval.model_copy(update={"required_roles": {"risk": 1, "business": 1}})
    return spec.model_copy(update={"approval": approval})


def test_quorum_counts_roles_not_just_people(engine, spec, mlflow_cfg, request_id) -> None:  # type: ignore[no-untyped-def]
    spec2 = _with_roles(spec)
    req = promotion.get_request(engine, request_id)
    version = registry.register(
        mlflow_cfg,
        spec.name,
        req["evidence"]["model_uri"],
        registry.version_tags(mlflow_cfg, spec.name, req["model_version"]),
    )
    rid = promotion.open_request(
        engine, spec2, version, "tr-roles", req["evidence"], req["evidence_hash"], "carol"
    )
    first = _decide(engine, spec2, mlflow_cfg, rid, actor=Actor("rita", frozenset({"admin", "risk"})))
    assert (first["status"], first["missing_roles"]) == (
        "pending",
        {"business": 1},
    )  # quorum 1 met, roles not
    got = promotion.get_request(engine, rid)
    assert got["quorum_status"]["missing_roles"] == {"business": 1}
    assert got["decisions"][0]["roles"] == ["admin", "risk"]
    pending = _decide(engine, spec2, mlflow_cfg, rid, actor=Actor("rick", frozenset({"admin", "risk"})))
    assert pending["status"] == "pending"  # two risk approvers are still no business approver
    done = _decide(engine, spec2, mlflow_cfg, rid, actor=Actor("bea", frozenset({"admin", "business"})))
    assert (done["status"], done["missing_roles"]) == ("approved", {})


def test_required_roles_are_validated() -> None:
    with pytest.raises(ValidationError) as err:
        Approval(approvers=Approvers(roles=["op"]), required_roles={"risk": 0})
    assert "approval.required_roles.risk" in str(err.value) and "fix:" in str(err.value)
    ok = Approval(approvers=Approvers(roles=["op"]), required_roles={"Risk": 1})
    assert ok.required_roles == {"risk": 1}


def test_the_run_identity_record_counts_for_separation_of_duties(
    engine, spec, mlflow_cfg, request_id
) -> None:  # type: ignore[no-untyped-def]
    """The request says carol trained it (a name that travelled with the run), but the run's identity record says
    dave triggered it: dave may not approve it, even though the request never names him."""
    req = promotion.get_request(engine, request_id)
    record_identity(
        engine,
        RunIdentity(
            req["training_run_id"], spec.name, "train", "manual__1", "manual", "dave", "olga", "lv-1"
        ),
    )
    spec2 = spec.model_copy(
        update={
            "approval": spec.approval.model_copy(
                update={"approvers": spec.approval.approvers.model_copy(update={"users": ["dave", "olga"]})}
            )
        }
    )
    for who in ("dave", "olga"):
        err = _refusal(engine, spec2, mlflow_cfg, request_id, actor=Actor(who, frozenset({"viewer"})))
        assert (err.status, err.code) == (403, "separation_of_duties")
