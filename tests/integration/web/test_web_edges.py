"""The web edges: hostile parameters never reach a 500, cookie writes always need the CSRF header, refused writes
are audited (without their body), and every response carries the security headers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airgate.core import audit
from tests.helpers import bearer, token

pytestmark = pytest.mark.api

MODEL = "knowledge_tracing"
HOSTILE = [
    str(2**64),
    "-1",
    str(-(2**63) - 1),
    str(2**63),
    "1e309",
    "NaN",
    "-inf",
    "9" * 5000,
    "x" * 20000,
    "\u202eü😀\u0000",
    "%00",
    "../../etc/passwd",
]
BODIES = [
    "{}",
    "[]",
    "1e309",
    "NaN",
    "[" * 50000,
    '{"answers": [{"event_id": "e", "label": 18446744073709551616}]}',
    '{"to_version": "1", "justification": "x", "version": -9223372036854775809}',
    "\xff\xfe",
]
SAMPLE = {"model": MODEL, "request_id": "apr-nope", "name": "drift.html", "path": "index.html"}


def _operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    paths = client.get("/airgate/openapi.json").json()["paths"]
    return [(p, m, op) for p, ops in paths.items() for m, op in ops.items()]


def _url(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return "/airgate" + path


def _requests(path: str, method: str, op: dict[str, Any]) -> list[tuple[str, dict[str, str], str | None]]:
    """One request per (parameter, hostile value), the other parameters benign; writes also get hostile bodies."""
    params = op.get("parameters", [])
    benign_path = {p["name"]: SAMPLE.get(p["name"], "x") for p in params if p["in"] == "path"}
    out: list[tuple[str, dict[str, str], str | None]] = []
    for param in params:
        for value in HOSTILE:
            if param["in"] == "path":
                quoted = value.replace("%", "%25").replace("/", "%2F").replace("\u0000", "%00")
                out.append((_url(path, {**benign_path, param["name"]: quoted}), {}, None))
            elif param["in"] == "query":
                out.append((_url(path, benign_path), {param["name"]: value}, None))
    if method != "get":
        out += [(_url(path, benign_path), {}, body) for body in BODIES]
    return out


def test_no_hostile_parameter_or_body_gives_a_500(client: TestClient) -> None:
    raw = TestClient(client.app, base_url="http://localhost", raise_server_exceptions=False)
    h = {**bearer("admin", "admin"), "Content-Type": "application/json"}
    failures, sent = [], 0
    for path, method, op in _operations(client):
        for url, query, body in _requests(path, method, op):
            r = raw.request(method.upper(), url, params=query, content=body, headers=h)
            sent += 1
            if r.status_code >= 500:
                failures.append((method, url[:80], {k: v[:20] for k, v in query.items()}, (body or "")[:20]))
    assert sent > 300 and not failures, failures[:10]


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("/airgate/api/approvals", {"limit": "-1"}),
        ("/airgate/api/approvals", {"limit": "0"}),
        ("/airgate/api/approvals", {"limit": str(2**64)}),
        ("/airgate/api/approvals", {"offset": "-1"}),
        ("/airgate/api/approvals", {"offset": str(2**63)}),
        ("/airgate/api/audit", {"before": str(2**64)}),
        ("/airgate/api/audit", {"before": "-1"}),
        (f"/airgate/api/reviews/{MODEL}/queue", {"limit": "-1"}),
        (f"/airgate/api/reviews/{MODEL}/queue", {"limit": "1001"}),
    ],
)
def test_out_of_bounds_integers_are_refused_with_an_error_body(
    client: TestClient, url: str, params: dict[str, str]
) -> None:
    r = client.get(url, params=params, headers=bearer("viewer", "viewer"))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "invalid_request" and isinstance(body["detail"], str)
    assert [e["loc"][-1] for e in body["errors"]] == [next(iter(params))]
    assert all("input" not in e for e in body["errors"])  # a refusal never echoes what was sent


def test_a_non_bearer_authorization_header_does_not_skip_csrf_for_the_cookie(client: TestClient) -> None:
    client.cookies.set("_token", token("approver", "op"))
    body = {"to_version": "1", "justification": "a forged cross-site rollback"}
    url = f"/airgate/api/models/{MODEL}/rollback"
    for header in ("Basic x", "Bearer", "Bearer ", "bearer", "Digest abc", ""):
        r = client.post(url, json=body, headers={"Authorization": header})
        assert r.status_code == 403 and "CSRF" in r.json()["detail"], (header, r.text)
    client.cookies.clear()
    explicit = client.post(url, json=body, headers=bearer("approver", "op"))  # a real Bearer token: no CSRF
    assert explicit.status_code != 403 or "CSRF" not in explicit.text


def _refusals(engine: Any) -> list[dict[str, Any]]:
    return audit.events(engine, event_type="request_refused")


def test_refused_writes_are_audited_without_their_body(client: TestClient, sqlite_engine: Any) -> None:
    url = f"/airgate/api/models/{MODEL}/rollback"
    client.cookies.set("_token", token("approver", "op"))
    assert client.post(url, json={"to_version": "1", "justification": "no csrf"}).status_code == 403
    client.cookies.clear()
    secret = "SECRET-do-not-log-" + "z" * 5000
    h = bearer("approver", "op")
    assert client.post(url, json={"to_version": "", "justification": secret}, headers=h).status_code == 422
    missing = client.post("/airgate/api/models/nope/rollback", json={"to_version": "1", "justification": "x"})
    assert missing.status_code == 401  # anonymous: not audited
    assert (
        client.post(
            "/airgate/api/models/nope/rollback", json={"to_version": "1", "justification": "x"}, headers=h
        ).status_code
        == 404
    )
    assert client.put("/airgate/api/approvals", headers=h).status_code == 405
    assert (
        client.post("/airgate/api/approvals/apr-nope/decisions", content=secret, headers=h).status_code == 422
    )
    decision = {"decision": "approve", "comment": "ok", "evidence_hash": "0" * 64}
    nope = client.post("/airgate/api/approvals/apr-nope/decisions", json=decision, headers=h)
    assert nope.status_code == 404 and nope.json()["code"] == "not_found"  # the lookup before the rules
    assert client.get("/airgate/api/approvals/apr-nope", headers=h).status_code == 404  # a read: not audited
    got = _refusals(sqlite_engine)
    assert [(e["actor"], e["entity"]["method"], e["details"]["status"]) for e in got] == [
        ("approver", "POST", 403),
        ("approver", "POST", 422),
        ("approver", "POST", 404),
        ("approver", "PUT", 405),
        ("approver", "POST", 422),
        ("approver", "POST", 404),
    ]
    assert (
        got[0]["entity"]["path"] == f"/airgate/api/models/{MODEL}/rollback"
        and "CSRF" in got[0]["details"]["reason"]
    )
    assert "to_version" in got[1]["details"]["reason"]
    assert "SECRET" not in json.dumps(got, default=str)
    assert audit.verify_chain(sqlite_engine).ok


@pytest.mark.parametrize(
    "url",
    [
        "/airgate/api/me",
        "/airgate/api/nope",
        "/airgate/api/approvals?limit=-1",
        "/airgate/approvals",
        "/airgate/openapi.json",
        "/airgate/static/vendor/jquery-3.7.1/jquery.min.js",
    ],
)
def test_every_response_carries_the_security_headers(client: TestClient, url: str) -> None:
    for headers in ({}, bearer("viewer", "viewer")):
        r = client.get(url, headers=headers)
        assert r.headers["x-content-type-options"] == "nosniff", (url, r.status_code)
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["x-frame-options"] == "SAMEORIGIN"
        assert "frame-ancestors" in r.headers["content-security-policy"]
