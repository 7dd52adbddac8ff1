"""Create (once) the passwords of the SimpleAuthManager users that `make up` serves, and print them.

Users and roles: admin (admin), trainer (op), approver (op), viewer (viewer). The passwords file is the one named
by AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE; it stays under the git-ignored AIRFLOW_HOME.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path


def ensure_passwords() -> dict[str, str]:
    users = [
        u.split(":")[0]
        for u in os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "").split(",")
        if u
    ]
    path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    current: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for u in users:
        if u not in current:
            current[u] = secrets.token_urlsafe(12)
            changed = True
    if changed or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=2))
        path.chmod(0o600)
    return current


if __name__ == "__main__":
    pw = ensure_passwords()
    if "--print" in sys.argv:
        roles = dict(u.split(":") for u in os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
        print("airgate users (http://localhost:8080):")
        for user, password in pw.items():
            print(f"  {user:<9} role={roles.get(user, '?'):<7} password={password}")
