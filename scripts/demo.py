"""`make demo`: the whole lifecycle, headless, on the embedded default (SQLite everywhere, local folders).

Each stage runs as its real DAG under ``dag.test()``; the approval goes through the governance plugin's HTTP API
with a real Airflow JWT, exactly as the Approvals page would send it. Exits non-zero if any stage fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
MODEL = "knowledge_tracing"
OUT: TextIO = sys.stdout


def say(*args: Any) -> None:
    print(*args, file=OUT, flush=True)


@contextlib.contextmanager
def quiet(log_path: Path) -> Iterator[None]:
    """Send everything Airflow, MLflow and the tasks print (fds 1 and 2) to a log file; keep the summary clean."""
    global OUT
    log_path.parent.mkdir(parents=True, exist_ok=True)
    saved_out, saved_err = os.dup(1), os.dup(2)
    OUT = os.fdopen(os.dup(1), "w")
    with open(log_path, "a") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            OUT.flush()
            OUT = sys.stdout


def _dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    return bag.dags


def run_dag(dags: dict[str, Any], stage: str, allow_fail: bool = False, **kwargs: Any) -> Any:
    from airgate.orchestration.dags.approval_step import DAG_TEST_MARK_SUCCESS
    from airgate.orchestration.localrun import dag_test

    dag = dags[f"{MODEL}__{stage}"]
    if stage == "train":
        # Under a scheduler, await_approval waits (deferred) for the decision and confirm_champion checks it; under
        # dag.test() its trigger would wait inline for a decision the demo only makes afterwards, through the API.
        kwargs.setdefault("mark_success_pattern", DAG_TEST_MARK_SUCCESS)
    t0 = time.perf_counter()
    dr = dag_test(dag, **kwargs)  # the score DAG's deadline set aside: see airgate.orchestration.localrun
    state = str(dr.state)
    say(f"  {dag.dag_id:<28} {state:<8} {time.perf_counter() - t0:5.1f}s")
    if state != "success" and not allow_fail:
        failed = [
            ti.task_id for ti in dr.get_task_instances() if str(ti.state) in ("failed", "upstream_failed")
        ]
        raise SystemExit(f"stage {stage} failed (tasks {failed}); see the task logs under $AIRFLOW_HOME/logs")
    return dr


def api_client() -> Any:
    """An HTTP client for the plugin app, authenticated per call with a real JWT from Airflow's auth manager."""
    from airflow.api_fastapi.app import init_auth_manager
    from fastapi.testclient import TestClient

    from airgate.web.app import mounted_app

    init_auth_manager()
    return TestClient(mounted_app(), base_url="http://localhost")


def token_for(username: str, role: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=4, help="new interaction batches to land this run")
    args = parser.parse_args()
    from airgate.core.settings import airgate_home

    log_path = airgate_home() / "demo.log"
    with quiet(log_path):
        code = run(args.batches, log_path)
    return code


def _print_training(m: dict) -> None:  # type: ignore[type-arg]
    """Every candidate, the Pareto front size and the chosen point, as the train DAG left them."""
    for name, c in m["candidates"].items():
        test = f", test AUC {c['test_auc']:.4f}" if "test_auc" in c else " (not read on test: not chosen)"
        say(
            f"   candidate {name:<9}: {int(c.get('n_trials', 1)):>2} trials, {c.get('train_seconds', 0):5.1f}s, "
            f"valid AUC {c['valid_auc']:.4f}, p95 {c['valid_p95_latency_ms_per_1k']:.2f} ms/1k rows, "
            f"{c['valid_model_size_kb']:.0f} KB{test}"
        )
    pareto = m.get("pareto") or {}
    chosen = pareto.get("chosen") or {}
    say(
        f"   Pareto front: {pareto.get('size')} of {pareto.get('trials')} trials (AUC up, latency down); chosen: "
        f"{chosen.get('candidate')} trial {chosen.get('trial')} {chosen.get('params')}"
    )


def run(n_batches: int, log_path: Path) -> int:
    t_start = time.perf_counter()
    from airgate.core.settings import airgate_home, resolve_path, warehouse_engine
    from airgate.core.spec import find_spec
    from airgate.core.warehouse import model_candidates
    from airgate.dev.simulator import SimConfig, Simulator, write_catalog
    from airgate.governance import promotion

    spec = find_spec(MODEL)
    landing = resolve_path(spec.source.path)
    oracle_dir = airgate_home() / "oracle" / MODEL
    sim = Simulator(SimConfig(ungraded_rate=0.15))  # 15% of answers await grading: late grades, or people
    write_catalog(sim, resolve_path(spec.cleaning.item_catalog or "catalog/items.csv"))
    first = len(list(landing.glob("interactions_*.csv"))) if landing.is_dir() else 0
    say(f"airgate demo: {MODEL}, AIRGATE_HOME={airgate_home()} (Airflow and task logs: {log_path})")
    say(f"1. the simulator lands interaction batches {first}..{first + n_batches - 1} in {landing}")
    for b in range(first, first + n_batches):
        sim.write_batch(
            b, landing, oracle_dir, roster_path=resolve_path(spec.slices.roster or "catalog/roster.csv")
        )

    dags = _dags()
    say("2. the lifecycle DAGs, each under dag.test():")
    run_dag(dags, "collect")
    run_dag(dags, "clean")
    run_dag(dags, "label")
    train_run = run_dag(dags, "train", allow_fail=True)

    engine = warehouse_engine()
    from sqlalchemy import select

    with engine.connect() as conn:
        cand = conn.execute(select(model_candidates).order_by(model_candidates.c.id.desc()).limit(1)).first()
    if cand is not None:
        _print_training(cand.metrics)
    if str(train_run.state) != "success":
        if cand is not None and cand.status == "gates_failed":
            failures = [
                f"{g['name']}: {g['detail']}" for g in cand.gate_report["gates"] if g["state"] != "pass"
            ]
            say(f"   the gates blocked candidate {cand.training_run_id}: {failures}")
            say("   (no approval request; the current champion keeps scoring)")
        else:
            raise SystemExit(f"stage train failed; see {log_path}")
    else:
        reqs = promotion.list_requests(engine, model=MODEL, status="pending")
        if not reqs:
            raise SystemExit("training opened no approval request; see the train DAG logs")
        approve_through_api(reqs[0])

    say("4. nightly scoring with the champion:")
    run_dag(dags, "score")
    labeling_loop(dags, engine, spec, sim, range(first, first + n_batches), oracle_dir)
    episode = drift_episode(dags, engine, spec, sim, first + n_batches, oracle_dir)
    _summary(engine, spec, oracle_dir, time.perf_counter() - t_start, episode)
    return 0


def labeling_loop(
    dags: dict[str, Any], engine: Any, spec: Any, sim: Any, batches: range, oracle_dir: Path
) -> None:
    """Late grades arrive, the champion auto-labels what it is sure of, people answer the review queue."""
    from airgate.core import datasets
    from airgate.core.settings import resolve_path
    from airgate.data import labeling
    from airgate.dev.simulator import answer_reviews, load_truth, write_late_grades

    say("5. the labeling loop (the simulator is the late grader and the reviewer):")
    for b in batches:
        write_late_grades(
            sim.batch(b), resolve_path(spec.label_policy.late_labels_path or "late_labels"), fraction=0.5
        )
    run_dag(dags, "label")
    queue = labeling.open_queue(engine, spec.name, limit=50)
    if queue:
        answers = answer_reviews(load_truth(oracle_dir), [q["event_id"] for q in queue], "approver")
        client = api_client()
        r = client.post(
            f"/airgate/api/reviews/{spec.name}/answers",
            json={"answers": answers[["event_id", "label"]].to_dict("records")},
            headers={"Authorization": f"Bearer {token_for('approver', 'op')}"},
        )
        say(
            f"   {len(queue)} most uncertain rows answered through the review API -> {r.status_code} {r.json()}"
        )
        run_dag(dags, "label")
    v = datasets.latest(engine, spec.name, "labeled")
    if v is not None:
        say(
            f"   labeled version {v.version_id}: {v.summary.get('by_source')}, "
            f"{v.summary.get('queued', 0)} queued for review, {v.summary.get('unlabeled', 0)} still unlabeled"
        )


def drift_episode(
    dags: dict[str, Any], engine: Any, spec: Any, sim: Any, batch_no: int, oracle_dir: Path
) -> dict[str, Any]:
    """A new, weaker cohort arrives in one batch: the score DAG's drift check alarms and updates the retrain Asset;
    the train DAG (which the scheduler would start on that Asset event) retrains, the approver approves through the
    API, and the next scoring run uses the new version."""
    import dataclasses

    from airgate.core import audit
    from airgate.core.settings import resolve_path, runs_dir
    from airgate.governance import promotion

    t0 = time.perf_counter()
    shifted = type(sim)(dataclasses.replace(sim.config, new_cohort_from_batch=batch_no))
    say(
        f"6. drift episode: batch {batch_no} brings a new cohort (ability {shifted.config.cohort_shift:+.1f} logits)"
    )
    shifted.write_batch(
        batch_no,
        resolve_path(spec.source.path),
        oracle_dir,
        roster_path=resolve_path(spec.slices.roster or "catalog/roster.csv"),
    )
    before = audit.events(engine, model=spec.name, event_type="drift_check", limit=100_000)
    ep: dict[str, Any] = {
        "batch": batch_no,
        "shift": shifted.config.cohort_shift,
        "previous_share": before[-1]["details"].get("value") if before else None,
    }
    for stage in ("collect", "clean", "label"):
        run_dag(dags, stage)
    old = promotion.current_champion(engine, spec.name)
    ep["old"] = old.version if old else None
    night = run_dag(dags, "score")
    sr = _scoring_run_of(engine, night.run_id)
    check = _event_of(engine, spec.name, "drift_check", sr["run_id"])
    ep.update(
        scoring_run_id=sr["run_id"],
        share=check["details"].get("value"),
        threshold=check["details"].get("threshold"),
        status=check["details"].get("status"),
    )
    say(
        f"   drift check of {sr['run_id']} (v{sr['model_version']}): {ep['status']}, drift share "
        f"{_fmt(ep['share'])} vs threshold {_fmt(ep['threshold'])}"
    )
    states = {ti.task_id: str(ti.state) for ti in night.get_task_instances()}
    if states.get("request_retraining") != "success":
        say(f"   no retraining requested (request_retraining: {states.get('request_retraining')})")
        return {**ep, "seconds": time.perf_counter() - t0}
    requested = _event_of(engine, spec.name, "retraining_requested", sr["run_id"])
    ep["requested"] = {"seq": requested["seq"], "reason": requested["details"].get("reason")}
    ep["asset_events"] = _retrain_asset_events(spec.name, night)
    say(
        f"   retraining_requested (audit #{requested['seq']}); Airflow recorded the retrain Asset event "
        f"{ep['asset_events']}: its consumer {MODEL}__train runs next"
    )
    last = getattr(_newest_candidate(engine), "id", None)
    train_run = run_dag(dags, "train", allow_fail=True)
    cand = _newest_candidate(engine)
    if str(train_run.state) != "success" or cand is None or cand.id == last:
        if cand is not None and cand.id != last and cand.status == "gates_failed":
            failures = [
                f"{g['name']}: {g['detail']}" for g in cand.gate_report["gates"] if g["state"] == "fail"
            ]
            say(f"   the gates blocked the retrained candidate: {failures}; v{ep['old']} keeps scoring")
        else:
            say(
                f"   the retraining produced no approvable candidate (train DAG: {train_run.state}); see {MODEL}__train"
            )
        return {**ep, "seconds": time.perf_counter() - t0}
    m = cand.metrics
    champ = m.get("champion") or {}
    gate_list = cand.gate_report["gates"]
    others = ", ".join(
        f"{g['name']}={g['state']}{'' if g.get('blocking', True) else ' (evidence only)'}"
        for g in gate_list
        if g["state"] != "pass"
    )
    say(
        f"   retrained: {m['chosen']}, test AUC {m['candidates'][m['chosen']]['test_auc']:.4f} vs champion "
        f"v{champ.get('version')} {_fmt(champ.get('test_auc'), 4)} on the same (newest) test rows; gates: "
        f"{sum(g['state'] == 'pass' for g in gate_list)}/{len(gate_list)} pass"
        + (f" ({others})" if others else "")
    )
    split = runs_dir() / cand.training_run_id / "split"
    ep["new_cohort_rows"] = {
        part: _rows_of_batch(split / f"{part}.parquet", batch_no) for part in ("train", "valid", "test")
    }
    reqs = [
        r
        for r in promotion.list_requests(engine, model=MODEL, status="pending")
        if r["training_run_id"] == cand.training_run_id
    ]
    if not reqs:
        raise SystemExit("the retraining opened no approval request; see the train DAG logs")
    approve_through_api(reqs[0], step="  ")
    night2 = run_dag(dags, "score")
    switched = _scoring_run_of(engine, night2.run_id)
    ep.update(
        new=switched["model_version"],
        approval_id=switched["approval_id"],
        switched_run=switched["run_id"],
        switched_rows=switched["rows_scored"],
        seconds=time.perf_counter() - t0,
    )
    say(
        f"   next scoring run {switched['run_id']}: {switched['rows_scored']} rows with v{switched['model_version']}"
    )
    return ep


def _fmt(x: Any, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) else str(x)


def _scoring_run_of(engine: Any, airflow_run_id: str) -> dict[str, Any]:
    from sqlalchemy import select

    from airgate.core.warehouse import scoring_runs

    with engine.connect() as conn:
        row = conn.execute(
            select(scoring_runs)
            .where(scoring_runs.c.airflow_run_id == airflow_run_id)
            .order_by(scoring_runs.c.started_at.desc())
        ).first()
    if row is None:
        raise SystemExit(f"score DAG run {airflow_run_id} recorded no scoring run")
    return dict(row._mapping)


def _event_of(engine: Any, model: str, event_type: str, scoring_run_id: str) -> dict[str, Any]:
    from airgate.core import audit

    found = [
        e
        for e in audit.events(engine, model=model, event_type=event_type, limit=100_000)
        if e["entity"].get("scoring_run_id") == scoring_run_id
    ]
    if not found:
        raise SystemExit(f"no {event_type} audit event for scoring run {scoring_run_id}")
    return found[-1]


def _retrain_asset_events(model: str, dag_run: Any) -> list[int]:
    """Ids of the retrain Asset's events that this score DAG run emitted, from Airflow's metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(
            session.scalars(
                select(AssetEvent.id)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(
                    AssetModel.uri == f"airgate://{model}/retrain", AssetEvent.source_run_id == dag_run.run_id
                )
            )
        )


def _newest_candidate(engine: Any) -> Any:
    from sqlalchemy import select

    from airgate.core.warehouse import model_candidates

    with engine.connect() as conn:
        return conn.execute(select(model_candidates).order_by(model_candidates.c.id.desc()).limit(1)).first()


def _rows_of_batch(path: Any, batch_no: int) -> int:
    """Rows of simulator batch ``batch_no`` (event ids e<batch>_<student>_<k>) in one split file (in storage)."""
    from airgate.data.feature_store import read_parquet

    ids = read_parquet(path, columns=["event_id"])["event_id"]
    return int(ids.str.startswith(f"e{batch_no:03d}_").sum())


def approve_through_api(req: dict[str, Any], step: str = "3.") -> None:
    say(
        f"{step} approval request {req['id']} for v{req['model_version']} via the plugin API (/airgate/api/...)"
    )
    client = api_client()
    body = {
        "decision": "approve",
        "comment": "demo: gates pass, metrics reviewed",
        "evidence_hash": req["evidence_hash"],
    }
    url = f"/airgate/api/approvals/{req['id']}/decisions"
    r = client.post(url, json=body, headers={"Authorization": f"Bearer {token_for('trainer', 'op')}"})
    say(f"   trainer approving their own model -> {r.status_code} {r.json().get('code')}")
    r = client.post(url, json=body, headers={"Authorization": f"Bearer {token_for('approver', 'op')}"})
    if r.status_code != 200 or r.json()["status"] != "approved":
        raise SystemExit(f"approval failed: {r.status_code} {r.text}")
    say(
        f"   approver -> {r.status_code} {r.json()['status']}; champion alias -> v{r.json()['model_version']}"
    )


def _summary(
    engine: Any, spec: Any, oracle_dir: Path, wall: float, episode: dict[str, Any] | None = None
) -> None:
    import pandas as pd
    from sqlalchemy import func, select

    from airgate.core import audit, datasets, storage
    from airgate.core.settings import airgate_home, mlflow_config, runs_dir
    from airgate.core.warehouse import data_validations, model_candidates, predictions, quarantine
    from airgate.dev.simulator import load_truth, oracle_auc
    from airgate.governance import promotion

    champ = promotion.current_champion(engine, spec.name)
    if champ is None:
        raise SystemExit("no approved champion at the end of the demo")
    with engine.connect() as conn:
        cand = (
            conn.execute(
                select(model_candidates).where(
                    model_candidates.c.model_version == champ.version, model_candidates.c.model == spec.name
                )
            )
            .one()
            ._mapping
        )
        n_pred = conn.execute(
            select(func.count()).select_from(predictions).where(predictions.c.model == spec.name)
        ).scalar_one()
        n_quar = conn.execute(select(func.count()).select_from(quarantine)).scalar_one()
        reasons = dict(
            conn.execute(select(quarantine.c.reason, func.count()).group_by(quarantine.c.reason)).all()
        )
        checks = dict(
            conn.execute(
                select(data_validations.c.status, func.count()).group_by(data_validations.c.status)
            ).all()
        )
        docs = conn.execute(select(data_validations.c.docs_path).limit(1)).scalar()
        lineage = conn.execute(
            select(
                predictions.c.model_version,
                predictions.c.approval_id,
                predictions.c.scoring_run_id,
                predictions.c.feature_data_version,
            )
            .where(predictions.c.model == spec.name)
            .limit(1)
        ).first()
    m = cand["metrics"]
    chosen = m["candidates"][m["chosen"]]
    base = m["candidates"]["baseline"]
    with storage.open_read(m["test_predictions"], what="the run's test predictions") as fh:
        test_ids = pd.read_csv(fh)["event_id"]
    o_auc = oracle_auc(load_truth(oracle_dir), test_ids)
    chain = audit.verify_chain(engine)
    versions = datasets.list_versions(engine, spec.name)
    by_kind: dict[str, int] = {}
    for v in versions:
        by_kind[v.kind] = by_kind.get(v.kind, 0) + 1
    latest_labeled = datasets.latest(engine, spec.name, "labeled")
    say("\n================ airgate demo summary ================")
    say(f"dataset versions   : {by_kind}")
    say(f"quarantined rows   : {n_quar} {reasons}")
    say(f"GX validation      : {checks} (clean versions by status; Data Docs: {docs})")
    if latest_labeled is not None:
        src = latest_labeled.summary.get("by_source", {})
        total = max(sum(src.values()), 1)
        shares = ", ".join(
            f"{k} {v} ({v / total:.1%})" for k, v in sorted(src.items(), key=lambda kv: -kv[1])
        )
        say(f"label shares       : {shares}")
        auto_acc = _auto_label_accuracy(engine, latest_labeled.version_id, oracle_dir)
        if auto_acc is not None:
            say(
                f"auto-label accuracy: {auto_acc[0]:.3f} on {auto_acc[1]} rows, against the truth graded later"
            )
    trained_on = datasets.get(engine, cand["data_version"])
    say(
        f"training data      : {cand['data_version']} ({trained_on.row_count if trained_on else 0} labeled rows)"
    )
    say(
        f"model              : {spec.name} v{cand['model_version']} ({m['chosen']}), champion per ledger: "
        f"v{champ.version} (approval {champ.approval_id})"
    )
    say(
        f"test AUC           : {chosen['test_auc']:.4f}  | baseline {base['test_auc']:.4f} | "
        f"oracle (Bayes limit) {o_auc:.4f} | model/oracle {chosen['test_auc'] / o_auc:.3f}"
    )
    gate_states = ", ".join(f"{g['name']}={g['state']}" for g in (cand["gate_report"] or {}).get("gates", []))
    say(f"gates              : {gate_states}")
    say(
        f"other metrics      : logloss {chosen['test_logloss']:.4f}, ECE {chosen['test_ece']:.4f}, "
        f"p95 latency/1k rows {chosen['p95_latency_ms_per_1k']:.2f} ms"
    )
    say(
        f"rows scored        : {n_pred} (lineage of a row: model v{lineage[0]}, approval {lineage[1]}, "
        f"run {lineage[2]}, features {lineage[3]})"
        if lineage
        else "rows scored        : 0"
    )
    if lineage:
        _print_lineage(spec.name)
    if episode is not None:
        _print_episode(episode)
    say(
        f"audit events       : {chain.entries}, hash chain {'verified' if chain.ok else 'BROKEN at ' + str(chain.first_broken_seq)}"
    )
    say(f"wall time          : {wall:.0f}s")
    say("where to look next :")
    say(
        f"  - warehouse (SQLite): {airgate_home() / 'warehouse.db'}  tables predictions, audit_log, promotion_ledger"
    )
    say(f"  - MLflow: {mlflow_config().tracking_uri}  (mlflow ui --backend-store-uri <that>)")
    say(
        f"  - evidence bundle: {storage.as_string(runs_dir() / cand['training_run_id'] / 'gate_report.html')} "
        "(and .json)"
    )
    say(
        "  - make up, then http://localhost:8080 -> Plugins -> Governance -> Approvals, Models, Audit, Lineage"
    )
    if not chain.ok:
        raise SystemExit("audit chain does not verify")


def _print_episode(ep: dict[str, Any]) -> None:
    """The drift episode in four lines: detection, the retraining request, the new champion, the switch."""
    before = (
        f" (the night before: {_fmt(ep['previous_share'])})" if ep.get("previous_share") is not None else ""
    )
    say(
        f"drift episode      : batch {ep['batch']} brings a new cohort ({ep['shift']:+.1f} logits of ability); drift "
        f"share {_fmt(ep.get('share'))} vs threshold {_fmt(ep.get('threshold'))}{before}: {ep.get('status')} on the "
        f"cohort's first batch"
    )
    if "requested" not in ep:
        say("                     no retraining requested")
        return
    say(
        f"                     retraining_requested (audit #{ep['requested']['seq']}, reason "
        f"{ep['requested']['reason']}, scoring run {ep['scoring_run_id']}) -> retrain Asset event "
        f"{ep['asset_events']} -> {MODEL}__train"
    )
    if "new" not in ep:
        say(f"                     no new champion: v{ep['old']} keeps scoring")
        return
    rows = ep.get("new_cohort_rows") or {}
    say(
        f"                     champion v{ep['old']} -> v{ep['new']} (approval {ep['approval_id']}); new-cohort rows "
        f"in its split: train {rows.get('train')}, valid {rows.get('valid')}, test {rows.get('test')}"
    )
    say(
        f"                     scoring switched: run {ep['switched_run']} scored {ep['switched_rows']} rows with "
        f"v{ep['new']} (episode {ep['seconds']:.0f}s)"
    )


def _print_lineage(model: str) -> None:
    """One prediction walked back to its source files through the plugin's lineage API, as an auditor would."""
    from sqlalchemy import select

    from airgate.core.settings import warehouse_engine
    from airgate.core.warehouse import predictions

    with warehouse_engine().connect() as conn:
        row = conn.execute(
            select(predictions.c.partition_key, predictions.c.event_id)
            .where(predictions.c.model == model)
            .limit(1)
        ).one()
    node = f"prediction:{model}/{row.partition_key}/{row.event_id}"
    r = api_client().get(
        "/airgate/api/lineage",
        params={"node": node},
        headers={"Authorization": f"Bearer {token_for('viewer', 'viewer')}"},
    )
    if r.status_code != 200:
        raise SystemExit(f"lineage API failed: {r.status_code} {r.text}")
    nodes = r.json()["nodes"]
    counts: dict[str, int] = {}
    for n in nodes:
        key = f"{n['attrs'].get('kind')} dataset" if n["kind"] == "dataset" else n["kind"].replace("_", " ")
        counts[key] = counts.get(key, 0) + 1
    approval = next((n for n in nodes if n["kind"] == "approval"), None)
    order = [
        "scoring run",
        "model version",
        "approval",
        "training run",
        "labeled dataset",
        "clean dataset",
        "raw dataset",
        "batch",
        "file",
    ]
    path = " <- ".join(f"{counts[k]} {k}" if counts[k] > 1 else k for k in order if k in counts)
    who = ", ".join(approval["attrs"]["approvers"]) if approval else "nobody"
    say(f"lineage of a row   : {node} <- {path} (approved by {who}; GET /airgate/api/lineage?node=...)")


def _auto_label_accuracy(engine: Any, version_id: str, oracle_dir: Path) -> tuple[float, int] | None:
    import pandas as pd
    from sqlalchemy import select

    from airgate.core.warehouse import labels
    from airgate.dev.simulator import load_truth

    with engine.connect() as conn:
        auto = pd.DataFrame(
            conn.execute(
                select(labels.c.event_id, labels.c.label).where(
                    labels.c.version_id == version_id, labels.c.source == "auto"
                )
            ).all(),
            columns=["event_id", "label"],
        )
    if auto.empty:
        return None
    truth = load_truth(oracle_dir)[["event_id", "true_correct"]]
    joined = auto.merge(truth, on="event_id")
    return float((joined["label"] == joined["true_correct"]).mean()), len(joined)


if __name__ == "__main__":
    sys.exit(main())
