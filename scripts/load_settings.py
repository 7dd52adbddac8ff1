"""Load airflow_settings.yaml (Astro CLI format) into Airflow's metadata database, so no Astro CLI is needed.

Idempotent: existing connections, pools and variables with the same ids are replaced. ${VAR} references are
expanded from the environment.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return os.path.expandvars(value)
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def load(path: Path) -> dict[str, int]:
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    doc = _expand(yaml.safe_load(path.read_text()) or {}).get("airflow", {})
    counts = {"connections": 0, "pools": 0, "variables": 0}
    with create_session() as session:
        for c in doc.get("connections") or []:
            session.query(Connection).filter(Connection.conn_id == c["conn_id"]).delete()
            extra = c.get("conn_extra")
            session.add(Connection(
                conn_id=c["conn_id"], conn_type=c["conn_type"], host=c.get("conn_host"), schema=c.get("conn_schema"),
                login=c.get("conn_login"), password=c.get("conn_password"), port=c.get("conn_port"),
                extra=json.dumps(extra) if isinstance(extra, dict) else extra))
            counts["connections"] += 1
    for p in doc.get("pools") or []:
        Pool.create_or_update_pool(p["pool_name"], int(p["pool_slot"]), p.get("pool_description", ""),
                                   include_deferred=False)
        counts["pools"] += 1
    for v in doc.get("variables") or []:
        Variable.set(v["variable_name"], v["variable_value"])
        counts["variables"] += 1
    return counts


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "airflow_settings.yaml")
    print(f"loaded {target}: {load(target)}")
