"""The OpenAPI of the governance API documents its refusals, so a client knows what it can be told."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.api


@pytest.fixture(scope="module")
def paths() -> dict[str, Any]:
    from airgate.web.app import create_app

    return create_app().openapi()["paths"]


def test_the_decision_route_documents_401_403_404_and_409(paths: dict[str, Any]) -> None:
    responses = paths["/api/approvals/{request_id}/decisions"]["post"]["responses"]
    assert {"401", "403", "404", "409"} <= set(responses)
    assert responses["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert "DecisionOut" in responses["200"]["content"]["application/json"]["schema"]["$ref"]


def test_every_api_route_documents_401(paths: dict[str, Any]) -> None:
    api = {(p, m): op for p, ops in paths.items() if p.startswith("/api/") for m, op in ops.items()}
    assert api and all("401" in op["responses"] for op in api.values()), [
        k for k, op in api.items() if "401" not in op["responses"]
    ]


def test_writes_document_their_refusals(paths: dict[str, Any]) -> None:
    for path in ("/api/models/{model}/rollback", "/api/models/{model}/revoke"):
        assert {"401", "403", "404", "409"} <= set(paths[path]["post"]["responses"]), path
    assert {"401", "403", "404"} <= set(paths["/api/reviews/{model}/answers"]["post"]["responses"])
