"""Test helpers that drive the stage functions directly (no scheduler), the way the DAG tasks call them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airgate.core import registry
from airgate.core.spec import ModelSpec
from airgate.data import clean, collect, labeling
from airgate.dev.simulator import Simulator
from airgate.governance import promotion, registration
from airgate.model import gates, training

REPO_ROOT = Path(__file__).resolve().parents[1]


def migrated_sqlite(path: Path) -> Path:
    """A SQLite warehouse file at this release's schema, as ``make init`` leaves it (tasks never migrate)."""
    from airgate.core import migrations
    from airgate.core.warehouse import make_engine

    engine = make_engine(f"sqlite:///{path}")
    migrations.upgrade(engine)
    engine.dispose()
    return path


def roster_path() -> Path:
    """Where the shipped spec's slices look for the student roster (under the session's AIRGATE_HOME)."""
    return Path(os.environ["AIRGATE_HOME"]) / "catalog" / "knowledge_tracing_students.csv"


def land(sim: Simulator, root: Path, batches: range) -> Path:
    landing = root / "landing"
    for b in batches:
        sim.write_batch(b, landing, root / "oracle", roster_path=roster_path())
    return landing


def prepare_data(engine: Any, spec: ModelSpec, sim: Simulator, root: Path, batches: range = range(2)) -> str:
    landing = land(sim, root, batches)
    collect.ingest(engine, spec, landing)
    clean.clean_pending(engine, spec)
    result = labeling.label_pending(engine, spec)
    assert result.labeled_version_id is not None
    return result.labeled_version_id


def train_to_request(
    engine: Any,
    spec: ModelSpec,
    cfg: registry.MlflowConfig,
    root: Path,
    labeled: str,
    run_id: str = "tr-1",
    trained_by: str = "trainer",
) -> dict[str, str]:
    training.train(engine, training.TrainConfig(spec, labeled, run_id, trained_by, cfg, str(root / "runs")))
    report = gates.validate(engine, spec, cfg, run_id, str(root / "runs"))
    assert report.approvable, report.failures
    return registration.register_and_request(engine, spec, cfg, run_id, runs_dir=str(root / "runs"))


def approve(
    engine: Any, spec: ModelSpec, cfg: registry.MlflowConfig, request_id: str, user: str = "approver"
) -> dict[str, Any]:
    req = promotion.get_request(engine, request_id)
    return promotion.decide(
        engine,
        spec,
        request_id,
        promotion.Actor(user, frozenset({"op"})),
        "approve",
        "reviewed",
        req["evidence_hash"],
        lambda m, v: registry.set_alias(cfg, m, v),
    )


def second_version(
    engine: Any, spec: ModelSpec, cfg: registry.MlflowConfig, request_id: str, trained_by: str = "trainer"
) -> str:
    """A second registered version of the same model with its own approval request: the rules about rollback and
    revocation only need two approvable versions, not two trainings. Returns the new request id."""
    req = promotion.get_request(engine, request_id)
    version = registry.register(
        cfg,
        spec.name,
        req["evidence"]["model_uri"],
        registry.version_tags(cfg, spec.name, req["model_version"]),
    )
    return promotion.open_request(
        engine,
        spec,
        version,
        f"{req['training_run_id']}-again",
        req["evidence"],
        req["evidence_hash"],
        trained_by,
    )


def quick_spec() -> ModelSpec:
    """The shipped spec with fewer tuning trials (and DKT epochs): unit and browser tests stay quick; e2e tests run
    the shipped spec."""
    from airgate.core.spec import find_spec

    shipped = find_spec("knowledge_tracing")
    quick = [
        c.model_copy(update={"n_trials": 2, "params": {**c.params, "epochs": 4}}) if c.kind == "dkt" else c
        for c in shipped.candidates
    ]
    return shipped.model_copy(
        update={"tuning": shipped.tuning.model_copy(update={"n_trials": 4}), "candidates": quick}
    )


def token(username: str, role: str) -> str:
    """A real JWT from the running SimpleAuthManager, as /auth/token would issue it."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role)))


def bearer(username: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(username, role)}"}


def kill_mid_write(code: str, args: list[str], marker: Path, what: str, timeout_s: float = 180) -> None:
    """Run ``code`` in a fresh Python process, wait until it writes ``marker`` (it has reached the middle of its
    write and hangs there), then SIGKILL it: the worst case a worker meets, no cleanup of any kind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], env=os.environ.copy(), stderr=subprocess.PIPE
    )
    deadline = time.time() + timeout_s
    while not marker.exists():
        assert proc.poll() is None, (
            proc.stderr.read().decode()[-3000:] if proc.stderr else f"{what} exited early"
        )
        assert time.time() < deadline, f"the {what} never reached the middle of its write"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def snapshot_sqlite(source: Path, target: Path) -> Path:
    """A consistent copy of a live SQLite database (WAL content included), taken through SQLite's backup API.

    Never ``shutil.copy`` a database this process has open: closing any descriptor of the file drops every POSIX
    lock the process holds on it, so another process (an api-server on the session's metadata DB) may then take
    itself for the last connection, checkpoint and truncate the WAL under this process's connections, which then
    fail with "disk I/O error"; a plain copy also misses what is still in the WAL.
    """
    import sqlite3

    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return target


def roll_back(
    engine: Any,
    spec: ModelSpec,
    cfg: registry.MlflowConfig,
    to_version: str,
    justification: str = "roll back: the newer version regressed",
    proposer: str = "approver",
    confirmer: str = "admin",
) -> dict[str, Any]:
    """A four-eyes rollback as the rules require it: one approver proposes, a second, eligible one confirms (the
    default confirmer holds the spec's ``admin`` approver role). Returns the confirmed proposal."""
    proposal = promotion.propose_rollback(
        engine, spec, promotion.Actor(proposer, frozenset({"op"})), to_version, justification
    )
    return promotion.confirm_rollback(
        engine,
        spec,
        proposal["proposal_id"],
        promotion.Actor(confirmer, frozenset({"admin"})),
        lambda m, v: registry.set_alias(cfg, m, v),
        comment="second pair of eyes",
    )
