"""Issue 15: an op user edits Airflow connections (the UI, the REST API); that must not move airgate's record of truth.

Both apps are the api-server's own (Airflow's REST API with the plugin mounted, real JWTs): an op user repoints or
creates ``airgate_warehouse`` through ``POST``/``PATCH /api/v2/connections``, and the plugin keeps reading the
warehouse the deployment names, or refuses, naming the fix. It never shows the forged, empty ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airgate.core import audit, settings
from airgate.core.warehouse import promotion_ledger, utcnow
from tests.helpers import bearer, migrated_sqlite

pytestmark = pytest.mark.api


@pytest.fixture
def api(airflow_db, monkeypatch) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """Airflow's REST API with the airgate plugin mounted, as ``airflow api-server`` serves them."""
    from airflow.api_fastapi.app import create_app, purge_cached_app

    for name in ("AIRFLOW_CONN_AIRGATE_WAREHOUSE", "AIRGATE_WAREHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    purge_cached_app()
    with TestClient(create_app("core"), base_url="http://localhost") as client:
        yield client
    _forget_connection("airgate_warehouse")
    purge_cached_app()


def _champion(engine: Any, model: str, version: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            promotion_ledger.insert().values(
                model=model,
                action="promote",
                from_version=None,
                to_version=version,
                approval_id=f"apr-{version}",
                actor="approver",
                reason="ok",
                at=utcnow(),
            )
        )


def _forget_connection(conn_id: str) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()


def _forged(tmp_path: Path) -> dict[str, Any]:
    """An op user's connection at a fresh warehouse of their own: no champion, an audit log that "verifies"."""
    path = migrated_sqlite(tmp_path / "forged.db")
    return {"connection_id": "airgate_warehouse", "conn_type": "sqlite", "host": str(path)}


def _what_viewers_see(api: TestClient, model: str) -> tuple[Any, int]:
    viewer = bearer("viewer", "viewer")
    ledger = api.get(f"/airgate/api/models/{model}/ledger", headers=viewer)
    verified = api.get("/airgate/api/audit/verify", headers=viewer)
    assert ledger.status_code == verified.status_code == 200, ledger.text + verified.text
    return [row["to_version"] for row in ledger.json()], verified.json()["entries"]


def test_an_op_user_repointing_the_warehouse_connection_changes_nothing(
    api: TestClient, sqlite_engine, spec, monkeypatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _champion(sqlite_engine, spec.name, "3")
    audit.record(sqlite_engine, actor="approver", event_type="approved", model=spec.name, entity={"v": "3"})
    monkeypatch.setenv("AIRFLOW__AIRGATE__WAREHOUSE_URL", str(sqlite_engine.url))  # airflow.cfg [airgate]
    before = _what_viewers_see(api, spec.name)
    assert before == (["3"], 1)

    op = bearer("trainer", "op")
    created = api.post("/api/v2/connections", json=_forged(tmp_path), headers=op)
    assert created.status_code == 201, created.text  # op users may edit connections: that is Airflow's rule
    assert _what_viewers_see(api, spec.name) == before
    patched = api.patch(
        "/api/v2/connections/airgate_warehouse",
        json={**_forged(tmp_path), "host": str(tmp_path / "elsewhere.db")},
        headers=op,
    )
    assert patched.status_code == 200, patched.text
    assert _what_viewers_see(api, spec.name) == before


def test_a_warehouse_connection_only_in_the_metadata_database_is_refused(
    api: TestClient, spec, monkeypatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("AIRFLOW__AIRGATE__WAREHOUSE_URL", raising=False)
    created = api.post("/api/v2/connections", json=_forged(tmp_path), headers=bearer("trainer", "op"))
    assert created.status_code == 201, created.text
    with pytest.raises(settings.SettingMissing, match="ignored on purpose: op users can edit it"):
        api.get("/airgate/api/audit/verify", headers=bearer("viewer", "viewer"))
