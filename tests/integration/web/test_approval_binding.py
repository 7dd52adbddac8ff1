"""The plugin serves a request's report files only while they hash as they did when the request opened, and a
decision on a swapped file is refused: the API answers 409 ``evidence_changed`` naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airgate.governance import promotion
from tests.helpers import bearer, prepare_data, train_to_request

pytestmark = pytest.mark.api


@pytest.fixture
def pending(sqlite_engine, spec, small_sim, mlflow_cfg, tmp_path: Path) -> dict:  # type: ignore[no-untyped-def]
    labeled = prepare_data(sqlite_engine, spec, small_sim, tmp_path)
    req = train_to_request(sqlite_engine, spec, mlflow_cfg, tmp_path, labeled)
    return promotion.get_request(sqlite_engine, req["approval_request_id"])


def test_a_swapped_report_is_never_served_nor_approved(client: TestClient, pending: dict) -> None:
    h = bearer("approver", "op")
    url = f"/airgate/api/approvals/{pending['id']}"
    detail = client.get(url, headers=h).json()
    link = detail["context"]["links"]["gate_report"]
    assert link and client.get(link, headers=h).status_code == 200
    assert detail["quorum_status"]["missing_roles"] == {}
    report = Path(pending["binding"]["artifacts"]["gate_report.html"]["path"])
    report.write_text("<p>every gate passed, trust me</p>")
    served = client.get(link, headers=h)
    assert served.status_code == 409 and served.json()["code"] == "evidence_changed"
    assert "gate_report.html" in served.json()["detail"]
    you = client.get(url, headers=h).json()["you"]
    assert not you["can_decide"] and "gate_report.html" in you["reason"]
    body = {"decision": "approve", "comment": "looks fine", "evidence_hash": pending["evidence_hash"]}
    refused = client.post(f"{url}/decisions", json=body, headers=h)
    assert refused.status_code == 409 and refused.json()["code"] == "evidence_changed"
    assert "gate_report.html" in refused.json()["detail"]
