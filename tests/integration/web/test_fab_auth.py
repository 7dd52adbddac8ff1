"""The governance plugin under Airflow's FabAuthManager: a real `airflow api-server` with FAB users and FAB tokens.

The server gets its own AIRFLOW_HOME and SQLite metadata DB (migrated with `airflow db migrate`, which also creates
FAB's tables), users made with the FAB CLI (`airflow users create --role Admin|Op|Viewer`) and a warehouse seeded
with a real pending approval request. Tokens come from FAB's own endpoint (`POST /auth/token`), as a client gets them.
FAB role names reach the approver rules lowercased: the spec's `roles: [admin]` matches the FAB role "Admin".
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apiserver import ApiServer, free_port

pytestmark = pytest.mark.api
e2e = pytest.mark.e2e

FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
# username -> FAB role. alice is an approver only through the spec's roles ([admin]), approver only through its
# users ([approver, trainer]); viewer is neither.
FAB_USERS = {"alice": "Admin", "approver": "Op", "viewer": "Viewer"}
MODEL = "knowledge_tracing"


@dataclass
class FabServer:
    base: str
    passwords: dict[str, str]
    request: dict[str, Any]  # the seeded pending approval request
    mlflow: Any  # airgate.core.registry.MlflowConfig
    log: Path


def _airflow(env: dict[str, str], *args: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        cwd=env["AIRFLOW_HOME"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"airflow {args[:2]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


def _boot(env: dict[str, str], home: Path, port: int, passwords: dict[str, str]) -> ApiServer:
    """Migrate the server's own metadata DB, create the FAB users with the FAB CLI, start the api-server."""
    _airflow(env, "db", "migrate")  # with providers-fab installed this creates FAB's ab_* tables too
    for user, role in FAB_USERS.items():
        _airflow(
            env,
            "users",
            "create",
            "--username",
            user,
            "--password",
            passwords[user],
            "--role",
            role,
            "--firstname",
            user,
            "--lastname",
            "fab",
            "--email",
            f"{user}@airgate.test",
        )
    return ApiServer(env, port, home / "api-server.log", cwd=home)


def _seed_pending_request(home: Path, template: Path) -> tuple[dict[str, Any], Any]:
    """A real pending approval request (collect, clean, label, train, gates), as test_api's `pending` fixture."""
    from airgate.core import migrations
    from airgate.core.registry import MlflowConfig
    from airgate.core.spec import find_spec
    from airgate.core.warehouse import make_engine
    from airgate.dev.simulator import SimConfig, Simulator, write_catalog
    from airgate.governance import promotion
    from tests.helpers import prepare_data, train_to_request

    shipped = find_spec(
        MODEL
    )  # quicker than shipped (no DKT, 2 trials): this module tests auth, not training
    spec = shipped.model_copy(
        update={
            "tuning": shipped.tuning.model_copy(update={"n_trials": 2}),
            "candidates": [c for c in shipped.candidates if c.kind != "dkt"],
        }
    )
    sim = Simulator(SimConfig(students_per_batch=120, events_per_student=40))
    write_catalog(sim, Path(os.environ["AIRGATE_HOME"]) / "catalog" / "knowledge_tracing_items.csv")
    (home / "mlflow").mkdir()
    shutil.copy(template, home / "mlflow" / "mlflow.db")
    cfg = MlflowConfig.under(home / "mlflow")
    engine = make_engine(f"sqlite:///{home / 'warehouse.db'}")
    try:
        migrations.upgrade(engine)
        labeled = prepare_data(engine, spec, sim, home / "data")
        req = train_to_request(engine, spec, cfg, home / "data", labeled)
        return promotion.get_request(engine, req["approval_request_id"]), cfg
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def fab_server(tmp_path_factory: pytest.TempPathFactory, _mlflow_template: Path) -> Iterator[FabServer]:
    home = tmp_path_factory.mktemp("fab")
    (home / "airflow").mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    passwords = {u: secrets.token_urlsafe(12) for u in FAB_USERS}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER")}
    env.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'airflow.db'}",
            "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__API__WORKERS": "1",
            "AIRGATE_HOME": str(home / "airgate"),
            "AIRFLOW_CONN_AIRGATE_WAREHOUSE": json.dumps(
                {"conn_type": "sqlite", "host": str(home / "warehouse.db")}
            ),
            "AIRFLOW_CONN_AIRGATE_MLFLOW": json.dumps(
                {
                    "conn_type": "generic",
                    "extra": {
                        "tracking_uri": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
                        "artifact_root": str(home / "mlflow" / "mlartifacts"),
                    },
                }
            ),
        }
    )
    # The FAB CLI and the server start in their own processes while this one trains the model to approve.
    with ThreadPoolExecutor(1) as pool:
        booting = pool.submit(_boot, env, home, port, passwords)
        try:
            request, cfg = _seed_pending_request(home, _mlflow_template)
        except BaseException:
            with suppress(Exception):
                booting.result().stop()
            raise
        srv = booting.result()
    try:
        srv.wait_healthy()
        yield FabServer(base, passwords, request, cfg, srv.log_path)
    finally:
        srv.stop()


def _token(server: FabServer, user: str) -> str:
    r = httpx.post(
        f"{server.base}/auth/token", json={"username": user, "password": server.passwords[user]}, timeout=30
    )
    assert r.status_code == 201, r.text
    return str(r.json()["access_token"])


def _auth(server: FabServer, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(server, user)}"}


def _decide(server: FabServer, headers: dict[str, str]) -> httpx.Response:
    req = server.request
    body = {"decision": "approve", "comment": "reviewed under FAB", "evidence_hash": req["evidence_hash"]}
    return httpx.post(
        f"{server.base}/airgate/api/approvals/{req['id']}/decisions", json=body, headers=headers, timeout=60
    )


@e2e
def test_fab_token_endpoint_and_unauthenticated_calls(fab_server: FabServer) -> None:
    bad = httpx.post(
        f"{fab_server.base}/auth/token", json={"username": "viewer", "password": "wrong"}, timeout=30
    )
    assert bad.status_code == 401
    assert httpx.get(f"{fab_server.base}/airgate/api/me", timeout=30).status_code == 401
    me = httpx.get(
        f"{fab_server.base}/airgate/api/me", headers={"Authorization": "Bearer not-a-jwt"}, timeout=30
    )
    assert me.status_code in (401, 403)


@e2e
def test_me_reports_fab_roles_lowercased(fab_server: FabServer) -> None:
    seen = {}
    for user in FAB_USERS:
        r = httpx.get(f"{fab_server.base}/airgate/api/me", headers=_auth(fab_server, user), timeout=30)
        assert r.status_code == 200, r.text
        seen[user] = r.json()
    assert {u: (m["username"], m["roles"]) for u, m in seen.items()} == {
        "alice": ("alice", ["admin"]),
        "approver": ("approver", ["op"]),
        "viewer": ("viewer", ["viewer"]),
    }
    assert MODEL in seen["alice"]["approver_of"]  # FAB role Admin -> "admin", in the spec's approver roles
    assert MODEL in seen["approver"]["approver_of"]  # by name, in the spec's approver users
    assert seen["viewer"]["approver_of"] == []


@e2e
def test_viewer_is_refused_and_fab_approvers_may_decide(fab_server: FabServer) -> None:
    from airgate.core import registry

    req = fab_server.request
    url = f"{fab_server.base}/airgate/api/approvals/{req['id']}"
    who_may = {
        u: httpx.get(url, headers=_auth(fab_server, u), timeout=60).json()["you"]["can_decide"]
        for u in FAB_USERS
    }
    assert who_may == {"alice": True, "approver": True, "viewer": False}

    refused = _decide(fab_server, _auth(fab_server, "viewer"))
    assert refused.status_code == 403 and refused.json()["code"] == "not_approver", refused.text
    assert httpx.get(url, headers=_auth(fab_server, "viewer"), timeout=60).json()["status"] == "pending"

    approved = _decide(fab_server, _auth(fab_server, "approver"))
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert registry.alias_version(fab_server.mlflow, MODEL) == req["model_version"]

    # alice passes the approver check (by role); the request is simply no longer pending.
    late = _decide(fab_server, _auth(fab_server, "alice"))
    assert late.status_code == 409 and late.json()["code"] == "not_pending", late.text

    events = httpx.get(
        f"{fab_server.base}/airgate/api/audit",
        headers=_auth(fab_server, "viewer"),
        params={"model": MODEL},
        timeout=60,
    ).json()["events"]
    assert {(e["event_type"], e["actor"]) for e in events} >= {
        ("decision_refused", "viewer"),
        ("decision", "approver"),
    }


def test_actor_from_a_fab_user_as_the_auth_manager_loads_it(airflow_db: Path) -> None:
    """FabAuthManager.deserialize_user (what get_user calls for a FAB JWT) loads the User, roles eagerly, and
    closes its session: the actor is built from that detached object."""
    from airflow import settings
    from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager
    from airflow.providers.fab.auth_manager.models import Role, User, assoc_user_role
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    from airgate.web.auth import actor_from_user

    tables = [t for t in User.metadata.sorted_tables if t.name.startswith("ab_")]
    User.metadata.create_all(
        settings.get_engine(), tables=tables, checkfirst=True
    )  # `airflow db migrate` made them
    tag = secrets.token_hex(4)
    with create_session() as session:
        roles = [Role(name=f"Admin-{tag}"), Role(name=f"Model Approvers-{tag}")]
        user = User(
            first_name="Carol",
            last_name="Fab",
            username=f"Carol-{tag}",
            email=f"carol-{tag}@x.test",
            active=True,
            roles=roles,
        )
        session.add(user)
        session.flush()
        uid, role_ids = user.id, [r.id for r in roles]
    try:
        loaded = FabAuthManager().deserialize_user({"sub": str(uid)})
        actor = actor_from_user(loaded)
        assert actor.username == f"Carol-{tag}"
        assert actor.roles == {f"admin-{tag}", f"model approvers-{tag}"}
    finally:
        with create_session() as session:
            session.execute(delete(assoc_user_role).where(assoc_user_role.c.user_id == uid))
            session.execute(delete(User).where(User.id == uid))
            session.execute(delete(Role).where(Role.id.in_(role_ids)))


def test_actor_from_a_simple_auth_manager_user() -> None:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from airgate.web.auth import actor_from_user

    actor = actor_from_user(SimpleAuthManagerUser(username="approver", role="OP"))
    assert (actor.username, actor.roles) == ("approver", {"op"})
