"""Airflow's overhead: landing -> champion scoring under a running scheduler, against the critical path of task time.

A LocalExecutor deployment on SQLite (``airgate.dev.devstack``: scheduler, dag-processor, triggerer and api-server as
processes) runs the shipped spec's DAGs by themselves; the benchmark lands two simulator batches once the sensor
is deferred, approves the first candidate as soon as its request opens (the approver's think time is not Airflow's
overhead and is left out), and starts the night's score run. It reports:

* wall: landing -> approval request, plus approval -> scored night;
* critical path: per DAG run of the chain (collect's ingest, clean, label, train, score), the longest chain of task
  durations through its graph (mapped tasks count once, as their longest map index), summed;
* the ratio of the two, and the sensor's wake-up latency (landing -> the sensor's task ends).
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MODEL = "knowledge_tracing"
STAGES = ("collect", "clean", "label", "train", "score", "monitor")


def _spec(folder: Path, poke_interval_s: float) -> None:
    raw = yaml.safe_load((ROOT / "include" / "specs" / f"{MODEL}.yaml").read_text())
    raw["source"]["poke_interval_s"] = poke_interval_s
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def overhead(poke_interval_s: float | None = None, timeout_s: float = 1800) -> dict[str, Any]:
    from airgate.dev.devstack import AirflowApi, Stack, StackConfig
    from airgate.dev.simulator import SimConfig, Simulator, write_catalog

    work = Path(tempfile.mkdtemp(prefix="airgate-overhead-"))
    home = work / "airgate"
    shipped = yaml.safe_load((ROOT / "include" / "specs" / f"{MODEL}.yaml").read_text())
    poke = (
        poke_interval_s
        if poke_interval_s is not None
        else float(shipped["source"].get("poke_interval_s", 30))
    )
    _spec(work / "specs", poke)
    settings = {
        "AIRGATE_HOME": str(home),
        "AIRGATE_SPECS_DIR": str(work / "specs"),
        "AIRGATE_WAREHOUSE_URL": f"sqlite:///{home / 'warehouse.db'}",
        "AIRGATE_MLFLOW_URI": f"sqlite:///{home / 'mlflow.db'}",
        "AIRGATE_MLFLOW_ARTIFACTS": str(home / "mlartifacts"),
    }
    sim = Simulator(SimConfig(students_per_batch=120, events_per_student=40))
    write_catalog(sim, home / "catalog" / f"{MODEL}_items.csv")
    stack = Stack(StackConfig(work / "airflow", settings))
    try:
        stack.start()
        af = AirflowApi(stack, MODEL)
        stack.wait_for(lambda: af.parsed(STAGES), 240, "the DAGs to be parsed")
        af.unpause(STAGES)

        def deferred() -> str | None:
            for r in af.dag_runs("collect"):
                if af.states("collect", r["dag_run_id"]).get("wait_for_new_files") == ["deferred"]:
                    return str(r["dag_run_id"])
            return None

        collect_run = stack.wait_for(deferred, 300, "the sensor to defer", every=1)
        landed = time.time()
        for b in range(2):
            sim.write_batch(
                b,
                home / "landing" / MODEL,
                home / "oracle",
                roster_path=home / "catalog" / f"{MODEL}_students.csv",
            )
        request = stack.wait_for(
            lambda: next(iter(af.pending_requests()), None), timeout_s, "the request", every=1
        )
        requested = time.time()
        af.approve(request, "benchmark")
        approved = time.time()
        night = af.trigger("score")
        af.wait_run("score", night, timeout_s)
        scored = time.time()

        sensor = next(
            t for t in af.task_instances("collect", collect_run) if t["task_id"] == "wait_for_new_files"
        )
        wake_s = _ts(sensor["end_date"]) - landed
        ingest = next(t for t in af.task_instances("collect", collect_run) if t["task_id"] == "ingest")
        path = {"collect": _ts(ingest["end_date"]) - _ts(ingest["start_date"])}
        for stage in ("clean", "label", "train"):
            runs = [r for r in af.dag_runs(stage) if r["run_type"] == "asset_triggered"]
            path[stage] = sum(af.critical_path_s(stage, r["dag_run_id"]) for r in runs)
        path["score"] = af.critical_path_s("score", night)
        wall = (requested - landed) + (scored - approved)
        critical = sum(path.values())
        return {
            "executor": "LocalExecutor",
            "metadata": "sqlite",
            "poke_interval_s": poke,
            "wall_s": round(wall, 1),
            "critical_path_s": round(critical, 1),
            "ratio": round(wall / critical, 2),
            "sensor_wake_up_s": round(wake_s, 1),
            "critical_path_by_dag_s": {k: round(v, 1) for k, v in path.items()},
        }
    finally:
        stack.stop()
