"""Governance API latency as an approver and an auditor feel it: a real `airflow api-server` serving the plugin over
HTTP, a warehouse holding 10,000 audit events and a few hundred approval requests, median and p95 per endpoint.

Requests go through the whole stack (uvicorn, Airflow's JWT check, the plugin's routes, the warehouse), one at a
time after a warm-up, so the figures are what a page load waits for, not a throughput claim.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EVENT_TYPES = [
    "ingest",
    "clean",
    "validate",
    "label",
    "train_split",
    "tune",
    "train",
    "gate",
    "register",
    "approval_requested",
    "decision",
    "promotion",
    "scoring_run",
]
ACTORS = ["airflow", "trainer", "approver", "ops-lead", "approver2"]


def _evidence(i: int) -> dict[str, Any]:
    """An evidence bundle shaped like gates.validate's (gates, metrics per candidate, slices, drift summary)."""
    cands = {
        c: {"valid_auc": 0.70 + i % 7 / 1000, "test_auc": 0.69, "p95_latency_ms_per_1k": 4.2, "trials": 16}
        for c in ("baseline", "lightgbm", "dkt")
    }
    gates = [
        {
            "name": n,
            "state": "pass",
            "value": 0.7,
            "threshold": 0.6,
            "detail": f"{n} within its limit",
            "blocking": True,
        }
        for n in (
            "beats_baseline",
            "no_worse_than_champion",
            "slice_gap",
            "calibration",
            "latency_p95",
            "reproducible",
            "drift",
            "test_set_read_once",
        )
    ]
    slices = {
        "grade_level": {"slices": {str(g): {"auc": 0.69, "rows": 400} for g in range(5, 10)}},
        "cohort": {"slices": {c: {"auc": 0.7, "rows": 900} for c in ("A", "B", "C")}},
    }
    return {
        "model": "knowledge_tracing",
        "training_run_id": f"tr-{i}",
        "data_version": f"labeled-{i:016x}",
        "candidate": "lightgbm",
        "kind": "lightgbm",
        "metrics": cands,
        "gates": gates,
        "slices": slices,
        "drift": {"drift_share": 0.1, "dataset_drift": False, "drifted": ["hour"]},
        "approvable": True,
        "champion": {"version": str(max(i - 1, 1)), "test_auc": 0.68},
        "code_version": "0" * 40,
    }


def seed(url: str, events: int, requests: int) -> dict[str, Any]:
    from airgate.core import audit, migrations
    from airgate.core.spec import find_spec
    from airgate.core.warehouse import make_engine
    from airgate.governance import promotion
    from airgate.model import gates

    engine = make_engine(url)
    migrations.upgrade(engine)
    spec = find_spec("knowledge_tracing")
    t0 = time.perf_counter()
    for i in range(requests):
        ev = _evidence(i)
        promotion.open_request(engine, spec, str(i + 1), f"tr-{i}", ev, gates.evidence_hash(ev), "trainer")
    written = audit.count(engine)
    batch = 500
    while written < events:
        with engine.begin() as conn:  # one transaction per batch: the chain stays intact, seeding stays quick
            for _ in range(min(batch, events - written)):
                n = written
                audit.append(
                    conn,
                    actor=ACTORS[n % len(ACTORS)],
                    event_type=EVENT_TYPES[n % len(EVENT_TYPES)],
                    model="knowledge_tracing",
                    entity={"model_version": str(n % 40), "run": f"r-{n}"},
                    details={"rows": n, "note": "seeded for the latency benchmark"},
                )
                written += 1
    seeded = {
        "events": audit.count(engine),
        "approval_requests": requests,
        "seed_s": round(time.perf_counter() - t0, 1),
    }
    assert audit.verify_chain(engine).ok
    engine.dispose()
    return seeded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(url: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRGATE_WAREHOUSE_URL": url,
        "AIRGATE_HOME": str(work),
        "AIRFLOW__API__WORKERS": "1",
    }
    log = (work / "api-server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(1)
    _stop(proc)
    raise RuntimeError("api-server did not start:\n" + (work / "api-server.log").read_text()[-3000:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _token(base: str, user: str) -> str:
    import httpx

    passwords = json.loads(Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
    r = httpx.post(f"{base}/auth/token", json={"username": user, "password": passwords[user]}, timeout=30)
    r.raise_for_status()
    return str(r.json()["access_token"])


def _measure(client: Any, path: str, params: dict[str, Any], n: int) -> dict[str, Any]:
    for _ in range(5):
        client.get(path, params=params).raise_for_status()
    times = []
    size = 0
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        size = len(r.content)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(0.95 * (n - 1))], 1),
        "requests": n,
        "bytes": size,
    }


def api_latency(
    backend: str, url: str, work: Path, events: int = 10_000, requests: int = 300, n: int = 200
) -> dict[str, Any]:
    import httpx

    seeded = seed(url, events, requests)
    proc, base = _serve(url, work)
    try:
        headers = {"Authorization": f"Bearer {_token(base, 'approver')}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            newest = client.get("/airgate/api/audit", params={"limit": 1}).json()["events"][0]["seq"]
            out = {
                "approval_queue": _measure(client, "/airgate/api/approvals", {"status": "pending"}, n),
                "approval_detail": _measure(
                    client,
                    "/airgate/api/approvals/"
                    + client.get("/airgate/api/approvals", params={"limit": 1}).json()[0]["id"],
                    {},
                    n,
                ),
                "audit_first_page": _measure(client, "/airgate/api/audit", {"limit": 100}, n),
                "audit_deep_page": _measure(
                    client, "/airgate/api/audit", {"limit": 100, "before": newest // 2}, n
                ),
                "audit_filtered": _measure(
                    client,
                    "/airgate/api/audit",
                    {"limit": 100, "actor": "approver", "event_type": "decision"},
                    n,
                ),
                "audit_page_html": _measure(client, "/airgate/audit", {}, n),
            }
    finally:
        _stop(proc)
    return {"backend": backend, **seeded, **out}
