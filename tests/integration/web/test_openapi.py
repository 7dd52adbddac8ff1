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
    for path in (
        "/api/models/{model}/rollback",
        "/api/models/{model}/rollbacks/{proposal_id}/confirm",
        "/api/models/{model}/revoke",
    ):
        assert {"401", "403", "404", "409"} <= set(paths[path]["post"]["responses"]), path
    assert {"401", "403", "404"} <= set(paths["/api/reviews/{model}/answers"]["post"]["responses"])


def _operations(paths: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p, m): op for p, ops in paths.items() for m, op in ops.items()}


def test_every_route_documents_its_refusals_with_the_error_body(paths: dict[str, Any]) -> None:
    """Route by route: signed-in routes 401 and 403 (an invalid token), writes 403 (CSRF), path parameters 404,
    any parameter or body 422; every one of them answers an ``ErrorBody``."""
    missing = []
    for (path, method), op in _operations(paths).items():
        expected = set()
        params = op.get("parameters", [])
        if not path.startswith("/static/vendor/"):
            expected |= {"401", "403"}
        if method != "get":
            expected |= {"403", "422"}
        if any(p["in"] == "path" for p in params):
            expected.add("404")
        if params or op.get("requestBody"):
            expected.add("422")
        for status in sorted(expected):
            got = op["responses"].get(status, {}).get("content", {}).get("application/json", {}).get("schema")
            if got != {"$ref": "#/components/schemas/ErrorBody"}:
                missing.append((method, path, status))
    assert not missing, missing


def test_validation_refusals_are_documented_as_error_bodies_not_fastapis_default() -> None:
    from airgate.web.app import create_app

    schema = create_app().openapi()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert set(schema["components"]["schemas"]["ErrorBody"]["properties"]) == {"detail", "code", "errors"}
    listed = schema["paths"]["/api/approvals"]["get"]
    bounds = {p["name"]: p["schema"] for p in listed["parameters"] if p["name"] in ("limit", "offset")}
    assert bounds["limit"]["minimum"] == 1 and bounds["limit"]["maximum"] == 500
    assert bounds["offset"]["minimum"] == 0 and bounds["offset"]["maximum"] == 2**63 - 1


def test_every_written_route_documents_409_where_a_rule_can_conflict(paths: dict[str, Any]) -> None:
    for (path, method), op in _operations(paths).items():
        if method == "post" and path.startswith("/api/models/"):
            assert "409" in op["responses"], path
