"""The plugin shows a tampered ledger and checks the audit log against its anchors (storage and the registry)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from airgate.core import audit, audit_anchor
from airgate.core.warehouse import promotion_ledger, utcnow
from tests.helpers import bearer

pytestmark = pytest.mark.api


def test_a_forged_promote_row_is_shown_as_tampering(client: TestClient, sqlite_engine, spec) -> None:  # type: ignore[no-untyped-def]
    with sqlite_engine.begin() as conn:
        conn.execute(
            promotion_ledger.insert().values(
                model=spec.name,
                action="promote",
                to_version="1",
                approval_id="apr-x",
                actor="mallory",
                at=utcnow(),
            )
        )
    r = client.get(f"/airgate/api/models/{spec.name}", headers=bearer("viewer", "viewer"))
    assert r.status_code == 409 and r.json()["code"] == "ledger_tampered", r.text
    assert "cannot be trusted" in r.json()["detail"]


def test_verify_route_checks_the_anchors(client: TestClient, sqlite_engine, mlflow_cfg) -> None:  # type: ignore[no-untyped-def]
    h = bearer("viewer", "viewer")
    audit.record(
        sqlite_engine, actor="ann", event_type="decision", model="m", entity={"approval_request_id": "r"}
    )
    got = client.get("/airgate/api/audit/verify", headers=h).json()
    assert got["ok"] is False and "no anchor" in got["reason"] and got["first_broken_seq"] == 1
    head = audit_anchor.anchor(sqlite_engine, mlflow_cfg)
    assert head is not None and audit_anchor.registry_anchor(mlflow_cfg) == head
    got = client.get("/airgate/api/audit/verify", headers=h).json()
    assert got["ok"] is True and got["anchored_seq"] == head.seq
