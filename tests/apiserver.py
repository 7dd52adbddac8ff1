"""A real `airflow api-server` for a test module: start it on a free port, wait until it answers, stop it.

Shared by the plugin, FAB and browser tests so all three start and stop the server the same way: its own process
group (so SIGINT reaches uvicorn's workers), the log kept in a file, and a startup failure reported with that log.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from airgate.dev.devstack import free_port, stop_process_groups

__all__ = ["ApiServer", "free_port"]


class ApiServer:
    def __init__(self, env: dict[str, str], port: int, log_path: Path, cwd: Path | None = None) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--host", "127.0.0.1"],
            env={**env, "AIRFLOW__API__BASE_URL": self.base, "AIRFLOW__API__WORKERS": "1"},
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 180) -> ApiServer:
        """Returns once the health endpoint answers; fails the test with the log's tail otherwise."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail("api-server did not start:\n" + self.log_tail(), pytrace=False)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGINT to the whole group (SIGTERM can leave uvicorn's children running), then SIGKILL if it hangs."""
        stop_process_groups([self.proc])
        self._log.close()
