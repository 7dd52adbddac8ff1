"""Airflow as it is deployed, on one machine: scheduler, dag-processor, triggerer and api-server as separate
processes, on LocalExecutor or on CeleryExecutor with one or more workers, each with its own environment.

Used by the real-scheduler end-to-end tests, by ``make bench`` (Airflow's overhead) and by ``make up
EXECUTOR=celery``. Every process gets the same Airflow configuration through the environment (one JWT secret, one
metadata DB, one Execution API URL); a Celery worker may get its own ``AIRGATE_HOME`` on top, which is how the
tests prove that workers share nothing but the databases and the object store (``AIRGATE_STORAGE_URL``).

Only the standard library and httpx are imported here, so importing it costs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from airgate.dev.airflow_api import AirflowApi

__all__ = [
    "AirflowApi",
    "Stack",
    "StackConfig",
    "StackError",
    "ensure_database",
    "free_port",
    "running",
    "stop_process_groups",
]

REPO_ROOT = Path(__file__).resolve().parents[3]
USERS = "admin:admin,trainer:op,approver:op,approver2:op,viewer:viewer"

# How fast the components notice new work. Airflow's defaults suit a fleet of DAGs; these are what airgate's few
# DAGs need to react within seconds (every value is a documented Airflow option).
RESPONSIVE = {
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
}


def stop_process_groups(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """SIGINT to each process's group (SIGTERM can leave uvicorn's and the executors' children running), then
    SIGKILL for any that has not exited within ``timeout``. The processes must have been started in their own
    session (``start_new_session=True``)."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)


class StackError(RuntimeError):
    """A component did not start, or a wait ran out; the message carries the logs' tails."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _passes(name: str) -> bool:
    """Whether the caller's variable reaches the components: all but Airflow's own configuration, which the stack
    sets, except ``[airgate]`` (``AIRFLOW__AIRGATE__*``), which is airgate's deployment setting like ``AIRGATE_*``."""
    return not name.startswith("AIRFLOW__") or name.startswith("AIRFLOW__AIRGATE__")


@dataclass
class StackConfig:
    airflow_home: Path
    env: dict[str, str]  # airgate's settings and anything else every component needs
    executor: str = "LocalExecutor"  # or CeleryExecutor
    metadata_url: str | None = None  # default: SQLite under airflow_home
    broker_url: str | None = None  # Celery: redis://...
    result_backend: str | None = None  # Celery: db+postgresql+psycopg://...
    workers: list[dict[str, str]] = field(default_factory=lambda: [{}])  # Celery: per-worker env overrides
    port: int = 0  # 0: a free one
    parallelism: int = 4
    dags_folder: Path = REPO_ROOT / "dags"
    plugins_folder: Path = REPO_ROOT / "plugins"


@dataclass
class Component:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Stack:
    """Start with :meth:`start`, stop with :meth:`stop` (or use :func:`running`)."""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.port = cfg.port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.components: list[Component] = []
        self.logs = cfg.airflow_home / "logs-stack"
        self.env = self._environment()

    # ------------------------------------------------------------------------------------------ configuration
    def _environment(self) -> dict[str, str]:
        cfg = self.cfg
        home = cfg.airflow_home
        # Airflow's configuration is this stack's own; airgate's deploy-time settings ([airgate] too) pass through.
        env = {k: v for k, v in os.environ.items() if _passes(k)}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(cfg.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(cfg.plugins_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": cfg.executor,
                "AIRFLOW__CORE__PARALLELISM": str(cfg.parallelism),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
                "AIRFLOW__API_AUTH__JWT_SECRET": env.get("AIRGATE_STACK_JWT_SECRET") or secrets.token_hex(16),
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API__BASE_URL": self.base,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": cfg.metadata_url or f"sqlite:///{home / 'airflow.db'}",
                "GIT_PYTHON_REFRESH": "quiet",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                "PYTHONUNBUFFERED": "1",
                **RESPONSIVE,
            }
        )
        if cfg.executor == "CeleryExecutor":
            if not (cfg.broker_url and cfg.result_backend):
                raise StackError(
                    "CeleryExecutor needs broker_url (Redis) and result_backend (the metadata DB)"
                )
            env["AIRFLOW__CELERY__BROKER_URL"] = cfg.broker_url
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = cfg.result_backend
            env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(cfg.parallelism)
        env.update(cfg.env)
        if not (env.get("AIRGATE_AUDIT_KEY") or env.get("AIRFLOW__AIRGATE__AUDIT_KEY")):
            raise StackError(
                "AIRGATE_AUDIT_KEY is not set: every component MACs the audit chain with the same key; set it "
                "(make does: $AIRGATE_HOME/audit.key) in this environment or in StackConfig.env"
            )
        return env

    # ------------------------------------------------------------------------------------------ processes
    def _run(self, args: Sequence[str], what: str, timeout: float = 600) -> None:
        out = subprocess.run(
            [sys.executable, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
        )
        if out.returncode != 0:
            raise StackError(f"{what} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")

    def _spawn(self, name: str, args: Sequence[str], extra_env: dict[str, str] | None = None) -> Component:
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name}.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
        comp = Component(name, proc, log_path, log)
        self.components.append(comp)
        return comp

    def prepare(self) -> None:
        """The deploy steps: Airflow's metadata DB, the airgate warehouse's schema, pools and variables."""
        self.cfg.airflow_home.mkdir(parents=True, exist_ok=True)
        self._run(["-m", "airflow", "db", "migrate"], "airflow db migrate")
        self._run(["-m", "airgate.cli", "migrate"], "airgate migrate")
        self._run(
            [str(REPO_ROOT / "scripts" / "load_settings.py"), str(REPO_ROOT / "airflow_settings.yaml")],
            "loading airflow_settings.yaml",
        )
        self._run([str(REPO_ROOT / "scripts" / "users.py")], "creating the users' passwords")

    def start(self, timeout: float = 240) -> Stack:
        self.prepare()
        self._spawn("api-server", ["api-server", "--port", str(self.port), "--host", "127.0.0.1"])
        self._spawn("scheduler", ["scheduler"])
        self._spawn("dag-processor", ["dag-processor"])
        self._spawn("triggerer", ["triggerer"])
        if self.cfg.executor == "CeleryExecutor":
            for i, overrides in enumerate(self.cfg.workers):
                self._spawn(
                    f"worker-{i}",
                    [
                        "celery",
                        "worker",
                        "--concurrency",
                        str(self.cfg.parallelism),
                        "--celery-hostname",
                        f"airgate-worker-{i}@%h",
                    ],
                    overrides,
                )
        self.wait_for(self._healthy, timeout, "the api-server to answer")
        return self

    def _healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.base}/api/v2/monitor/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def check_alive(self) -> None:
        dead = [c for c in self.components if c.proc.poll() is not None]
        if dead:
            raise StackError(
                "stopped: "
                + ", ".join(f"{c.name} (exit {c.proc.returncode})" for c in dead)
                + "\n"
                + self.tails()
            )

    def tails(self, chars: int = 2500) -> str:
        return "\n".join(f"--- {c.name} ({c.log_path})\n{c.tail(chars)}" for c in self.components)

    def wait_for(self, probe: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
        """Poll ``probe`` until it returns something truthy; a component dying or the timeout raises StackError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            value = probe()
            if value:
                return value
            time.sleep(every)
        raise StackError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.tails()}")

    def stop(self) -> None:
        """Every component's process group interrupted at once, then each waited for (see stop_process_groups)."""
        stop_process_groups([c.proc for c in reversed(self.components)])
        for c in self.components:
            c.log.close()

    # ------------------------------------------------------------------------------------------ the REST API
    def passwords(self) -> dict[str, str]:
        return dict(
            json.loads(Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
        )

    def token(self, user: str) -> str:
        """A JWT from Airflow's own login endpoint: the user is signed in, as in the UI."""
        import httpx

        r = httpx.post(
            f"{self.base}/auth/token", json={"username": user, "password": self.passwords()[user]}, timeout=30
        )
        r.raise_for_status()
        return str(r.json()["access_token"])

    def client(self, user: str = "admin") -> Any:
        import httpx

        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token(user)}"}, timeout=60
        )


@contextmanager
def running(cfg: StackConfig, timeout: float = 240) -> Iterator[Stack]:
    stack = Stack(cfg)
    try:
        yield stack.start(timeout)
    finally:
        stack.stop()


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database a URL names when it does not exist yet (``make up EXECUTOR=celery``)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if not u.drivername.startswith("postgresql") or not u.database:
        return
    admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if (
                conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": u.database}).first()
                is None
            ):
                conn.execute(text(f'CREATE DATABASE "{u.database}"'))
    finally:
        admin.dispose()


def _serve(argv: Sequence[str] | None = None) -> int:
    """``make up EXECUTOR=celery``: the same components in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m airgate.dev.devstack")
    parser.add_argument("--executor", default="CeleryExecutor", choices=["LocalExecutor", "CeleryExecutor"])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    home = Path(os.environ.get("AIRFLOW_HOME", REPO_ROOT / ".airflow"))
    settings = {k: v for k, v in os.environ.items() if k.startswith("AIRGATE_")}
    metadata = os.environ.get("AIRGATE_AIRFLOW_DB_URL")
    if args.executor == "CeleryExecutor" and not metadata:
        raise SystemExit(
            "CeleryExecutor needs a PostgreSQL metadata DB: set AIRGATE_AIRFLOW_DB_URL "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/airflow)"
        )
    for url in (metadata, settings.get("AIRGATE_WAREHOUSE_URL"), settings.get("AIRGATE_MLFLOW_URI")):
        if url:
            ensure_database(url)
    cfg = StackConfig(
        home,
        settings,
        executor=args.executor,
        metadata_url=metadata,
        broker_url=os.environ.get("AIRGATE_CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
        result_backend=f"db+{metadata}" if metadata else None,
        workers=[{} for _ in range(args.workers)],
        port=args.port,
    )
    stack = Stack(cfg)
    stack.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(home / "passwords.json")

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # the components run in their own sessions: stop them, do not orphan them

    signal.signal(signal.SIGTERM, _terminate)
    try:
        stack.start()
        print(f"airgate on {args.executor}: {stack.base} (logs in {stack.logs}); Ctrl-C stops it", flush=True)
        while True:
            stack.check_alive()
            time.sleep(2)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
