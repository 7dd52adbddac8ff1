"""One model's DAGs through Airflow's REST API and the plugin's, as the tests and the benchmark drive them on a
running ``devstack.Stack``. Standard library and httpx only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airgate.dev.devstack import Stack


class AirflowApi:
    """One model's DAGs through Airflow's REST API and the plugin's, as signed-in users (admin and approver)."""

    def __init__(self, stack: Stack, model: str, approver: str = "approver") -> None:
        self.stack = stack
        self.model = model
        self.admin = stack.client("admin")
        self.approver = stack.client(approver)

    def dag_id(self, stage: str) -> str:
        return f"{self.model}__{stage}"

    def dag_runs(self, stage: str) -> list[dict[str, Any]]:
        r = self.admin.get(
            f"/api/v2/dags/{self.dag_id(stage)}/dagRuns", params={"order_by": "run_after", "limit": 100}
        )
        r.raise_for_status()
        return list(r.json()["dag_runs"])

    def task_instances(self, stage: str, run_id: str) -> list[dict[str, Any]]:
        r = self.admin.get(
            f"/api/v2/dags/{self.dag_id(stage)}/dagRuns/{run_id}/taskInstances", params={"limit": 200}
        )
        r.raise_for_status()
        return list(r.json()["task_instances"])

    def states(self, stage: str, run_id: str) -> dict[str, list[str | None]]:
        """Task id -> states, one per map index (in order)."""
        out: dict[str, list[str | None]] = {}
        for ti in sorted(self.task_instances(stage, run_id), key=lambda t: t["map_index"]):
            out.setdefault(ti["task_id"], []).append(ti["state"])
        return out

    def unpause(self, stages: Sequence[str]) -> None:
        for s in stages:
            r = self.admin.patch(f"/api/v2/dags/{self.dag_id(s)}", json={"is_paused": False})
            r.raise_for_status()

    def parsed(self, stages: Sequence[str]) -> bool:
        r = self.admin.get("/api/v2/dags", params={"limit": 100})
        return r.status_code == 200 and {d["dag_id"] for d in r.json()["dags"]} >= {
            self.dag_id(s) for s in stages
        }

    def trigger(self, stage: str) -> str:
        r = self.admin.post(
            f"/api/v2/dags/{self.dag_id(stage)}/dagRuns", json={"logical_date": None, "conf": {}}
        )
        r.raise_for_status()
        return str(r.json()["dag_run_id"])

    def finished(self, stage: str, run_id: str) -> dict[str, Any] | None:
        r = self.admin.get(f"/api/v2/dags/{self.dag_id(stage)}/dagRuns/{run_id}")
        r.raise_for_status()
        run = r.json()
        return dict(run) if run["state"] in ("success", "failed") else None

    def wait_run(self, stage: str, run_id: str, timeout: float) -> dict[str, Any]:
        run = self.stack.wait_for(lambda: self.finished(stage, run_id), timeout, f"{stage} run {run_id}")
        if run["state"] != "success":
            from airgate.dev.devstack import StackError

            raise StackError(
                f"{stage} {run_id} {run['state']}: {self.states(stage, run_id)}\n{self.stack.tails()}"
            )
        return dict(run)

    def failed_runs(self, stages: Sequence[str]) -> dict[str, list[str]]:
        out = {s: [r["dag_run_id"] for r in self.dag_runs(s) if r["state"] == "failed"] for s in stages}
        return {s: ids for s, ids in out.items() if ids}

    def pending_requests(self) -> list[dict[str, Any]]:
        r = self.approver.get("/airgate/api/approvals", params={"status": "pending"})
        r.raise_for_status()
        return [q for q in r.json() if q["model"] == self.model]

    def approve(self, request: dict[str, Any], comment: str = "reviewed") -> dict[str, Any]:
        r = self.approver.post(
            f"/airgate/api/approvals/{request['id']}/decisions",
            json={"decision": "approve", "comment": comment, "evidence_hash": request["evidence_hash"]},
        )
        r.raise_for_status()
        return dict(r.json())

    def critical_path_s(self, stage: str, run_id: str) -> float:
        """The run's critical path of task time: the longest chain of task durations through the DAG's graph, a
        mapped task counting as its longest map index (what the run would take with no scheduling overhead)."""
        from datetime import datetime

        r = self.admin.get(f"/api/v2/dags/{self.dag_id(stage)}/tasks")
        r.raise_for_status()
        downstream = {t["task_id"]: set(t.get("downstream_task_ids") or []) for t in r.json()["tasks"]}
        upstream: dict[str, set[str]] = {t: set() for t in downstream}
        for t, downs in downstream.items():
            for d in downs:
                upstream[d].add(t)
        took: dict[str, float] = {}
        for ti in self.task_instances(stage, run_id):
            if ti["start_date"] and ti["end_date"] and ti["state"] in ("success", "skipped"):
                secs = datetime.fromisoformat(ti["end_date"]) - datetime.fromisoformat(ti["start_date"])
                took[ti["task_id"]] = max(took.get(ti["task_id"], 0.0), secs.total_seconds())
        finish: dict[str, float] = {}

        def done(t: str) -> float:
            if t not in finish:
                finish[t] = max((done(u) for u in upstream[t]), default=0.0) + took.get(t, 0.0)
            return finish[t]

        return max((done(t) for t in downstream), default=0.0)
