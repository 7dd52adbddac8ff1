"""The plugin served by a real `airflow api-server` process: login, token, plugin routes, nav entry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tests.apiserver import ApiServer, free_port
from tests.helpers import migrated_sqlite

pytestmark = [pytest.mark.api, pytest.mark.e2e]


@pytest.fixture(scope="module")
def server(airflow_db, tmp_path_factory):  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("apiserver")
    env = {
        **os.environ,
        "AIRGATE_HOME": str(home),
        "AIRFLOW_CONN_AIRGATE_WAREHOUSE": json.dumps(
            {"conn_type": "sqlite", "host": str(migrated_sqlite(home / "wh.db"))}
        ),
    }
    srv = ApiServer(env, free_port(), home / "api-server.log").wait_healthy()
    yield srv.base
    srv.stop()


def _login(base: str, user: str) -> str:
    passwords = json.loads(Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
    r = httpx.post(f"{base}/auth/token", json={"username": user, "password": passwords[user]}, timeout=30)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["access_token"])


def test_plugin_routes_are_served_and_authenticated(server: str) -> None:
    assert httpx.get(f"{server}/airgate/api/approvals", timeout=30).status_code == 401
    token = _login(server, "approver")
    me = httpx.get(f"{server}/airgate/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert me.status_code == 200 and (me.json()["username"], me.json()["roles"]) == ("approver", ["op"])
    listed = httpx.get(
        f"{server}/airgate/api/approvals", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert listed.status_code == 200 and listed.json() == []
    page = httpx.get(f"{server}/airgate/approvals", cookies={"_token": token}, timeout=30)
    assert page.status_code == 200 and "Approval requests" in page.text


def test_governance_menu_is_registered(server: str) -> None:
    token = _login(server, "viewer")
    r = httpx.get(f"{server}/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200
    plugin = next(p for p in r.json()["plugins"] if p["name"] == "airgate")
    views = [
        (v["category"], v["name"], v["href"], v["url_route"], v["destination"])
        for v in plugin["external_views"]
        if v["destination"] == "nav"
    ]
    assert views == [
        ("Governance", name, f"/airgate/{page}", f"airgate-{page}", "nav")
        for name, page in [
            ("Approvals", "approvals"),
            ("Models", "models"),
            ("Audit", "audit"),
            ("Lineage", "lineage"),
        ]
    ]
    tabs = [
        (v["name"], v["href"], v["destination"])
        for v in plugin["external_views"]
        if v["destination"] != "nav"
    ]
    assert tabs == [
        ("Approval", "/airgate/runs/{DAG_ID}/{RUN_ID}", "dag_run")
    ]  # the train run's evidence tab
    for _, _, href, _, _ in views:  # each menu entry opens a page the api-server serves, with the UI's cookie
        page = httpx.get(f"{server}{href}", cookies={"_token": token}, timeout=30)
        assert page.status_code == 200 and "signed in as" in page.text
