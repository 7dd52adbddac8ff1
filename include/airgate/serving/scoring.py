"""Batch scoring: only the approved champion, features from the training code path, written once, then published.

A scoring run has three steps, each safe to retry:

1. ``plan`` resolves the champion once (MLflow alias, checked against the promotion ledger: a version the ledger
   does not show as the approved champion is refused), records it in ``scoring_runs``, and writes a ``plan.json``
   under ``runs/scoring/<run>/`` in storage (``AIRGATE_STORAGE_URL``, so a scorer on any host reads it) naming
   the shards to score: the clean version's materialized point-in-time
   features (``feature_store``: computed by ``features.build_features``, the function training uses, once per
   version, split by student), computed here only if the clean DAG has not done it yet.
2. ``score_shard`` (one mapped task, or one pod, per shard) streams its shard in chunks of ``chunk_rows``:
   predict, then bulk-write the chunk (COPY on PostgreSQL) into ``predictions`` under the run id. Memory follows
   the chunk, not the night. A retried shard first deletes its own rows, so it never doubles them.
3. ``publish`` is the swap: in one transaction it checks that every planned row is there and that the version
   is still the ledger's champion, marks the run ``succeeded`` (the partition's visible set: a partial unique
   index allows one per partition) and deletes every other run's rows of that partition.

So rows are written once (no staging copy), and a retry, a re-run of the same logical date, or a worker killed
mid-write leaves exactly one set of predictions for the date. Every prediction row carries model version,
approval id, scoring run id and feature data version.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection, Engine

from airgate.core import audit, registry, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import bulk_insert_tuples, predictions, scoring_runs, utcnow
from airgate.data import feature_store
from airgate.governance import promotion
from airgate.model import predictors
from airgate.serving.planning import (  # noqa: F401 - re-exported: callers import them from here
    HISTORY_COLUMNS,
    PRED_COLUMNS,
    NoChampion,
    NotApproved,
    PublishRefused,
    ScoreConfig,
    ScorePlan,
    ScoreResult,
    Shard,
    ShardResult,
    _abandon_unpublished,
    _shards,
    _start_run,
    load_plan,
    plan,
    plan_path,
    resolve_champion,
    run_dir,
)

log = logging.getLogger(__name__)


def score_shard(
    engine: Engine,
    mlflow: registry.MlflowConfig,
    runs_dir: storage.Location,
    scoring_run_id: str,
    shard: int,
    predictor: predictors.Predictor | None = None,
) -> ShardResult:
    """Score one shard in chunks into ``predictions`` under the run. Idempotent: a retry replaces its own rows."""
    import pyarrow.parquet as pq

    p = load_plan(runs_dir, scoring_run_id)
    sh = p.shards[shard]
    t0 = time.perf_counter()
    with engine.begin() as conn:
        status = conn.execute(
            select(scoring_runs.c.status).where(scoring_runs.c.run_id == scoring_run_id)
        ).scalar()
        if status != "running":
            raise PublishRefused(
                f"scoring run {scoring_run_id} is {status or 'unknown'}, not running: "
                "plan a new run instead of scoring this one"
            )
        conn.execute(
            delete(predictions).where(
                predictions.c.scoring_run_id == scoring_run_id, predictions.c.shard == shard
            )
        )
    model = predictor or predictors.load_version(mlflow, p.model, p.model_version)
    history = (
        feature_store.read_parquet(sh.history_path)
        if sh.history_path
        else pd.DataFrame(columns=HISTORY_COLUMNS)
    )
    const = (p.model, p.partition_key)
    lineage = (p.model_version, p.approval_id, scoring_run_id, p.feature_data_version, shard)
    written = peak = 0
    # One thread decoding: Arrow's per-thread buffers otherwise keep raising the worker's resident memory for the
    # first dozens of chunks (measured: no slower, since a chunk is one row group). The shard is read from
    # storage a row group at a time (the reader seeks), never downloaded whole.
    with storage.open_read(sh.path, what=f"feature shard {shard} of scoring run {scoring_run_id}") as fh:
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=p.chunk_rows, use_threads=False):
            chunk = batch.to_pandas(use_threads=False)
            scores = np.asarray(model.predict(history, chunk), dtype="float64").tolist()
            tuples = [
                (*const, e, s, i, v, *lineage)
                for e, s, i, v in zip(
                    chunk["event_id"].tolist(),
                    chunk["student_id"].tolist(),
                    chunk["item_id"].tolist(),
                    scores,
                    strict=True,
                )
            ]
            with engine.begin() as conn:  # one short transaction per chunk: locks and memory stay small
                written += bulk_insert_tuples(conn, predictions, PRED_COLUMNS, tuples)
            peak = max(peak, len(chunk))
    log.info("scored shard %d of %s: %d rows", shard, scoring_run_id, written)
    return ShardResult(scoring_run_id, shard, written, time.perf_counter() - t0, peak)


def _why_not_publish(conn: Connection, spec: ModelSpec, run: Any, written: int) -> str | None:
    """Why the run cannot become the partition's predictions (not running, rows missing, champion changed)."""
    if run.status != "running":
        return f"the run is {run.status}"
    if run.rows_expected is None or written != run.rows_expected:
        return f"{written} rows written, {run.rows_expected} planned: a shard has not finished"
    if promotion.approved_version(conn, spec.name, run.model_version) != run.approval_id:
        champ = promotion.current_champion(conn, spec.name)
        return (
            f"v{run.model_version} is no longer the ledger's approved champion "
            f"(now: {('v' + champ.version) if champ else 'none'}); rescore with the new champion"
        )
    return None


def _swap(conn: Connection, spec: ModelSpec, run: Any, written: int, actor: str) -> list[str]:
    """Make the run the partition's only predictions: the other runs of the partition are superseded."""
    old = list(
        conn.execute(
            select(scoring_runs.c.run_id).where(
                scoring_runs.c.model == spec.name,
                scoring_runs.c.partition_key == run.partition_key,
                scoring_runs.c.run_id != run.run_id,
                scoring_runs.c.status.in_(("succeeded", "running")),
            )
        ).scalars()
    )
    if old:
        conn.execute(delete(predictions).where(predictions.c.scoring_run_id.in_(old)))
        conn.execute(
            update(scoring_runs)
            .where(scoring_runs.c.run_id.in_(old))
            .values(status="superseded", reason=f"superseded by {run.run_id}")
        )
    conn.execute(
        update(scoring_runs)
        .where(scoring_runs.c.run_id == run.run_id)
        .values(status="succeeded", rows_scored=written, finished_at=utcnow())
    )
    audit.append(
        conn,
        actor=actor,
        event_type="scoring_run",
        model=spec.name,
        entity={
            "scoring_run_id": run.run_id,
            "model_version": run.model_version,
            "approval_id": run.approval_id,
            "feature_data_version": run.feature_data_version,
        },
        details={
            "rows": written,
            "partition_key": run.partition_key,
            "shards": run.shards,
            "superseded": old,
        },
    )
    return old


def publish(engine: Engine, spec: ModelSpec, scoring_run_id: str, actor: str = "airflow") -> ScoreResult:
    """The swap: the run becomes the partition's only predictions in one commit, or nothing changes.

    The checks and the swap share one transaction (the run row locked on PostgreSQL; SQLite's BEGIN IMMEDIATE
    holds the database), so a revocation cannot slip in between them. A refusal is audited and raised.
    """
    with engine.begin() as conn:
        q = select(scoring_runs).where(scoring_runs.c.run_id == scoring_run_id)
        run = conn.execute(q.with_for_update() if conn.dialect.name == "postgresql" else q).one_or_none()
        if run is None:
            raise PublishRefused(f"no scoring run {scoring_run_id}")
        if run.status == "succeeded":  # a retried publish after the commit: already done
            return ScoreResult(
                run.run_id,
                run.model,
                run.partition_key,
                run.model_version,
                run.approval_id,
                run.feature_data_version,
                int(run.rows_scored or 0),
            )
        written = int(
            conn.execute(
                select(func.count())
                .select_from(predictions)
                .where(predictions.c.scoring_run_id == scoring_run_id)
            ).scalar_one()
        )
        reason = _why_not_publish(conn, spec, run, written)
        if reason is not None:
            audit.append(
                conn,
                actor=actor,
                event_type="scoring_refused",
                model=spec.name,
                entity={"scoring_run_id": scoring_run_id, "model_version": run.model_version},
                details={"reason": f"not published: {reason}", "partition_key": run.partition_key},
            )
        else:
            old = _swap(conn, spec, run, written, actor)
    if reason is not None:
        raise PublishRefused(f"scoring run {scoring_run_id} not published: {reason}")
    log.info(
        "published %s: %d rows of %s v%s for %s",
        scoring_run_id,
        written,
        spec.name,
        run.model_version,
        run.partition_key,
    )
    return ScoreResult(
        scoring_run_id,
        spec.name,
        run.partition_key,
        run.model_version,
        run.approval_id,
        run.feature_data_version,
        written,
        old,
    )


def score(engine: Engine, cfg: ScoreConfig) -> ScoreResult:
    """Plan, every shard, publish, in this process: what the DAG does across tasks (demo, tests, benchmarks)."""
    p = plan(engine, cfg)
    model = predictors.load_version(cfg.mlflow, p.model, p.model_version)
    for sh in p.shards:
        score_shard(engine, cfg.mlflow, cfg.runs, cfg.scoring_run_id, sh.index, predictor=model)
    return publish(engine, cfg.spec, cfg.scoring_run_id, actor=cfg.actor)


def score_shard_from_env(model: str, scoring_run_id: str, shard: int) -> dict[str, Any]:
    """The pod's entry point: connections and the runs folder come from the environment."""
    from airgate.core.settings import mlflow_config, runs_dir, warehouse_engine

    return score_shard(warehouse_engine(), mlflow_config(), runs_dir(), scoring_run_id, shard).to_dict()


def skip_night(
    engine: Engine,
    spec: ModelSpec,
    scoring_run_id: str,
    reason: str,
    actor: str = "airflow",
    airflow_run_id: str | None = None,
) -> None:
    """Audit a night with nothing to score with (no champion yet): recorded as skipped, nobody alerted."""
    audit.record(
        engine,
        actor=actor,
        event_type="scoring_skipped",
        model=spec.name,
        entity={"scoring_run_id": scoring_run_id},
        details={"reason": reason, "airflow_run_id": airflow_run_id},
    )


def refuse(engine: Engine, spec: ModelSpec, scoring_run_id: str, reason: str, actor: str = "airflow") -> None:
    """Audit a refused scoring run, so the refusal is on the record and not only in a task log."""
    audit.record(
        engine,
        actor=actor,
        event_type="scoring_refused",
        model=spec.name,
        entity={"scoring_run_id": scoring_run_id},
        details={"reason": reason},
    )
