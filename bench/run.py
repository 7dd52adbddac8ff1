"""`make bench`: timing targets live here, not in tests. Writes bench/results.json.

1. DAG parse cost: parsing dags/ as a ratio to a file of empty DAGs with the same number of DAGs and tasks,
   each measured in a fresh interpreter with Airflow already imported (so only the DAG file's own cost counts).
2. Scoring (scoring.py): airgate's scoring path (shards streamed in chunks, bulk write, publish) against raw
   ``booster.predict`` plus a raw bulk write of the same rows, in the same run, on SQLite and PostgreSQL (COPY), at
   two sizes (100k and 1M rows by default), with rows/s and one worker's peak memory at each size.
3. Data plane, model plane, auto-labels and active learning (data_plane.py, model_plane.py). ``data_plane_scale``:
   one 1M-row landing file through ingest + clean + validate (rows/s, against a pyarrow read + one COPY of the same
   rows), GX's share of it, and the peak RSS of ingest + clean at two file sizes, each in a fresh process.
4. Governance API latency (api_latency.py): median and p95 per endpoint with 10,000 audit events, on both databases.
5. Drift detection delay (drift_delay.py): batches from a new cohort's arrival to the first drift alarm after
   scoring, and false alarms on the batches before it, over a few seeds and cohort shifts.
6. Airflow's overhead (airflow_overhead.py): landing -> champion scoring under a running scheduler (LocalExecutor,
   SQLite, every component its own process) against the critical path of task time, and the sensor's wake-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
PG_ADMIN = os.environ.get("AIRGATE_BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


# ------------------------------------------------------------------------------------------------ parse cost

PARSE_PROBE = """
import json, runpy, sys, time
import airflow.sdk  # noqa: F401  (paid by every DAG file alike: not part of the comparison)
t0 = time.perf_counter()
runpy.run_path(sys.argv[1])
print(json.dumps(time.perf_counter() - t0))
"""


def _empty_equivalent(dags: dict[str, int], path: Path) -> None:
    lines = [
        "from datetime import datetime",
        "from airflow.sdk import DAG",
        "from airflow.providers.standard.operators.empty import EmptyOperator",
        "",
    ]
    for i, (dag_id, n) in enumerate(dags.items()):
        lines.append(f"with DAG('empty_{i}', schedule=None, start_date=datetime(2026, 1, 1)) as d{i}:")
        lines.append(f"    prev = EmptyOperator(task_id='t0')  # {dag_id}")
        for t in range(1, n):
            lines.append(f"    prev = prev >> EmptyOperator(task_id='t{t}')")
    path.write_text("\n".join(lines) + "\n")


def parse_cost(repeats: int) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    shape = {dag_id: len(d.tasks) for dag_id, d in bag.dags.items()}
    tmp = Path(tempfile.mkdtemp())
    empty = tmp / "empty_dags.py"
    _empty_equivalent(shape, empty)

    def measure(path: Path) -> float:
        runs = []
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, "-c", PARSE_PROBE, str(path)],
                capture_output=True,
                text=True,
                env=os.environ.copy(),
                check=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        return statistics.median(runs)

    # Both files the dag-processor parses: the DAGs, and the spec-errors file (it reads the specs again).
    dag_file, errors_file = (
        measure(ROOT / "dags" / "airgate_dags.py"),
        measure(ROOT / "dags" / "airgate_spec_errors.py"),
    )
    ours = dag_file + errors_file
    base = measure(empty)
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "dags": len(shape),
        "tasks": sum(shape.values()),
        "airgate_s": round(ours, 4),
        "dag_file_s": round(dag_file, 4),
        "spec_errors_file_s": round(errors_file, 4),
        "empty_equivalent_s": round(base, 4),
        "ratio": round(ours / base, 2),
        "repeats": repeats,
    }


# ------------------------------------------------------------------------------------------------ scoring


def _pg_database() -> tuple[str, Any] | None:
    from sqlalchemy import create_engine, text

    name = f"airgate_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        print(f"  PostgreSQL unavailable, skipping: {exc}")
        return None

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(
                text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='{name}'")
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))

    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", drop


def on_both_databases(what: str, work: Path, run: Any) -> dict[str, Any]:
    """Run one benchmark on a SQLite file, then on a throwaway PostgreSQL database when one is reachable."""
    out: dict[str, Any] = {}
    work.mkdir(parents=True, exist_ok=True)
    print(f"{what} on SQLite ...")
    (work / "sqlite").mkdir(exist_ok=True)
    (work / "postgres").mkdir(exist_ok=True)
    out["sqlite"] = run("sqlite", f"sqlite:///{work / 'sqlite.db'}", work / "sqlite")
    print(f"  {out['sqlite']}")
    pg = _pg_database()
    if pg is not None:
        url, drop = pg
        try:
            print(f"{what} on PostgreSQL ...")
            out["postgres"] = run("postgres", url, work / "postgres")
            print(f"  {out['postgres']}")
        finally:
            drop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--score-rows",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="night sizes to score (rows); the first is 1x, the last 10x by default",
    )
    ap.add_argument("--parse-repeats", type=int, default=5)
    ap.add_argument(
        "--mp-students", type=int, default=500, help="students per batch (4 batches) for the model plane"
    )
    ap.add_argument("--mp-trials", type=int, default=16, help="tuning trials per candidate (and per sampler)")
    ap.add_argument(
        "--only",
        choices=["dag_parse", "model_plane", "api", "scoring", "drift", "airflow", "data_plane_scale"],
        help="run one benchmark and merge it into results.json",
    )
    ap.add_argument(
        "--api-events", type=int, default=10_000, help="audit events in the API latency warehouse"
    )
    ap.add_argument(
        "--ingest-batches", type=int, default=10, help="batches of 10,000 rows for the ingest figures"
    )
    ap.add_argument(
        "--dp-rows", type=int, default=1_000_000, help="rows of the data_plane_scale landing file"
    )
    ap.add_argument(
        "--dp-rss-mb",
        type=int,
        nargs="+",
        default=[10, 100],
        help="landing file sizes (MB) whose ingest + clean peak RSS data_plane_scale measures",
    )
    ap.add_argument(
        "--dp-1gb", action="store_true", help="also measure a 1 GB landing file (long on 2 cores)"
    )
    args = ap.parse_args()
    # Every bench builds its own throwaway warehouses, so a key made for this run is enough when none is given
    # (`make bench` exports the deployment's); the benches and the processes they start all inherit it.
    os.environ.setdefault("AIRGATE_AUDIT_KEY", uuid.uuid4().hex + uuid.uuid4().hex)
    rss_sizes = tuple(args.dp_rss_mb) + ((1000,) if args.dp_1gb else ())
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    import scoring

    if args.only:
        import api_latency
        import model_plane

        out = ROOT / "bench" / "results.json"
        merged = json.loads(out.read_text()) if out.exists() else results
        work = Path(tempfile.mkdtemp(prefix="airgate-bench-"))
        try:
            if args.only == "dag_parse":
                merged["dag_parse"] = parse_cost(args.parse_repeats)
            elif args.only == "model_plane":
                merged["model_plane"] = model_plane.model_plane(
                    work / "mp", args.mp_students, 4, args.mp_trials
                )
            elif args.only == "scoring":
                merged["scoring"] = on_both_databases(
                    "scoring",
                    work,
                    lambda backend, url, w: scoring.scoring(backend, url, w, tuple(args.score_rows)),
                )
            elif args.only == "data_plane_scale":
                import data_plane

                merged["data_plane_scale"] = on_both_databases(
                    "data plane at scale",
                    work / "dps",
                    lambda backend, url, w: data_plane.data_plane_scale(
                        backend, url, w, args.dp_rows, rss_sizes
                    ),
                )
            elif args.only == "airflow":
                import airflow_overhead

                print("Airflow's overhead: landing -> champion scoring under the scheduler ...")
                merged["airflow"] = airflow_overhead.overhead()
            elif args.only == "drift":
                import drift_delay

                print("drift detection delay (batches from a new cohort's arrival to the first alarm) ...")
                merged["drift"] = drift_delay.run()
            else:
                merged["api"] = on_both_databases(
                    "governance API latency",
                    work / "api",
                    lambda backend, url, w: api_latency.api_latency(backend, url, w, args.api_events),
                )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        merged[args.only]["when"] = results["when"]
        out.write_text(json.dumps(merged, indent=2) + "\n")
        print(json.dumps(merged[args.only], indent=1))
        return 0
    print("parse cost ...")
    results["dag_parse"] = parse_cost(args.parse_repeats)
    print(f"  {results['dag_parse']}")
    import data_plane

    work = Path(tempfile.mkdtemp(prefix="airgate-bench-"))
    try:
        results["scoring"] = on_both_databases(
            "scoring", work, lambda backend, url, w: scoring.scoring(backend, url, w, tuple(args.score_rows))
        )
        results["data_plane"] = on_both_databases(
            "ingest and GX validation",
            work / "dp",
            lambda backend, url, w: data_plane.ingest_and_validate(url, w, args.ingest_batches, 200),
        )
        results["data_plane_scale"] = on_both_databases(
            "data plane at scale",
            work / "dps",
            lambda backend, url, w: data_plane.data_plane_scale(backend, url, w, args.dp_rows, rss_sizes),
        )
        import model_plane

        print("model plane: candidates, tuning, best AUC vs oracle, hypervolume vs random ...")
        results["model_plane"] = model_plane.model_plane(work / "mp", args.mp_students, 4, args.mp_trials)
        print(f"  { {k: v for k, v in results['model_plane'].items() if k != 'candidates'} }")
        import api_latency

        results["api"] = on_both_databases(
            "governance API latency",
            work / "api",
            lambda backend, url, w: api_latency.api_latency(backend, url, w, args.api_events),
        )
        print("auto-labels ...")
        results["auto_labels"] = data_plane.auto_labels(work)
        print(f"  {results['auto_labels']}")
        print("active learning vs random sampling ...")
        results["active_learning"] = data_plane.active_learning()
        print(f"  { {k: v for k, v in results['active_learning'].items() if k != 'curves'} }")
        import drift_delay

        print("drift detection delay (batches from a new cohort's arrival to the first alarm) ...")
        results["drift"] = drift_delay.run()
        import airflow_overhead

        print("Airflow's overhead: landing -> champion scoring under the scheduler ...")
        results["airflow"] = airflow_overhead.overhead()
        print(f"  {results['airflow']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
