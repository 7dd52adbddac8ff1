"""Load airflow_settings.yaml (Astro CLI format) into Airflow's metadata database, so no Astro CLI is needed.

Idempotent: existing connections, pools and variables with the same ids are replaced. ${VAR} references are
expanded from the environment here, once, wherever they appear (lists included): what is stored is the value every
process reads, never a template each process would expand its own way. An unset variable is an error.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class SettingsError(ValueError):
    """airflow_settings.yaml names something that cannot be resolved; the message names the file and field."""


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(2)
            if name not in os.environ:
                raise SettingsError(
                    f"{where}: ${{{name}}} is not set in the environment; export it (make sets "
                    "AIRGATE_HOME) or write the value itself"
                )
            return os.environ[name]

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


# airgate reads these from deployment-owned backends only (airgate.core.settings.deployment_connection): stored in the
# metadata database, where any op user edits them, they would be ignored, so loading one is a mistake to name.
DEPLOYMENT_ONLY = ("airgate_warehouse", "airgate_mlflow", "airgate_pseudonym_key")


def _refuse_deployment_connections(doc: dict[str, Any], path: Path) -> None:
    named = sorted({c.get("conn_id") for c in doc.get("connections") or []} & set(DEPLOYMENT_ONLY))
    if named:
        raise SettingsError(
            f"{path}: connections {', '.join(named)} do not belong in Airflow's metadata database (op users can "
            "edit it, so airgate ignores them there): set AIRGATE_WAREHOUSE_URL / AIRGATE_MLFLOW_URI and "
            "AIRGATE_MLFLOW_ARTIFACTS, or AIRFLOW_CONN_<ID> variables, or the [secrets] backend instead"
        )


def load(path: Path) -> dict[str, int]:
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    doc = _expand(yaml.safe_load(path.read_text()) or {}, str(path)).get("airflow", {})
    _refuse_deployment_connections(doc, path)
    counts = {"connections": 0, "pools": 0, "variables": 0}
    with create_session() as session:
        for c in doc.get("connections") or []:
            session.query(Connection).filter(Connection.conn_id == c["conn_id"]).delete()
            extra = c.get("conn_extra")
            session.add(
                Connection(
                    conn_id=c["conn_id"],
                    conn_type=c["conn_type"],
                    host=c.get("conn_host"),
                    schema=c.get("conn_schema"),
                    login=c.get("conn_login"),
                    password=c.get("conn_password"),
                    port=c.get("conn_port"),
                    extra=json.dumps(extra) if isinstance(extra, dict) else extra,
                )
            )
            counts["connections"] += 1
    for p in doc.get("pools") or []:
        Pool.create_or_update_pool(
            p["pool_name"], int(p["pool_slot"]), p.get("pool_description", ""), include_deferred=False
        )
        counts["pools"] += 1
    for v in doc.get("variables") or []:
        Variable.set(v["variable_name"], v["variable_value"])
        counts["variables"] += 1
    return counts


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "airflow_settings.yaml")
    print(f"loaded {target}: {load(target)}")
