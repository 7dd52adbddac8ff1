"""Monitoring after each scoring run: is what the champion now sees still what it was approved on?

Drift compares the rows just scored (their features and the champion's scores) with the champion's own validation
split scored by the same predictor: out-of-sample on both sides, so a confident model does not look drifted
against its own training rows. The Evidently report is stored beside the runs (``runs/monitoring/`` in storage,
``AIRGATE_STORAGE_URL``), the verdict goes to the warehouse
(one row per scoring run and check, replaced on a re-run) and to the audit log; an alarm is a separate
``drift_alarm`` event, the one that retraining listens for.

Decay runs when labels change (a new labeled version: late grades, review answers, or new graded data): the AUC of
the current champion's newest published predictions, on the events that now have a trusted label, against the
test AUC the approver saw in the approval evidence. Its verdict is keyed by ``<labeled version>@v<model version>``
(stored in the ``scoring_run_id`` column, which for decay holds that key): the verdict is a function of the labels
and of the champion, so a retry or a re-run on the same labels replaces it, while each new labeled version (or a new
champion) adds one, keeping the AUC history as labels come in. The newest scoring run id would not do: late labels
arrive for runs that are already old, and every new labeled version would overwrite the last run's verdict.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate.core import registry, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import (
    approval_requests,
    labels,
    model_candidates,
    monitoring_reports,
    predictions,
    scoring_runs,
)
from airgate.data import feature_store
from airgate.data.labeling import TRUSTED_SOURCES
from airgate.model import predictors
from airgate.serving.monitor_reports import (  # noqa: F401 - re-exported: callers import them from here
    _AUDITED,
    DECAY,
    SCORE,
    MonitorResult,
    _record,
    _scored_rows,
)

log = logging.getLogger(__name__)


def check_drift(
    engine: Engine,
    spec: ModelSpec,
    cfg: registry.MlflowConfig,
    scoring_run_id: str,
    runs_dir: storage.Location,
    actor: str = "airflow",
) -> MonitorResult:
    """Drift of one scoring run's features and scores against the champion's validation split. Re-runnable."""
    from airgate.data.features import load_history
    from airgate.model import drift
    from airgate.model.gates import DRIFT_FEATURES

    mon = spec.monitoring
    with engine.connect() as conn:
        run = conn.execute(select(scoring_runs).where(scoring_runs.c.run_id == scoring_run_id)).one()
        training_run = conn.execute(
            select(model_candidates.c.training_run_id).where(
                model_candidates.c.model == spec.name, model_candidates.c.model_version == run.model_version
            )
        ).scalar()
    columns = [*DRIFT_FEATURES, SCORE]
    out_dir = storage.location(runs_dir) / "monitoring" / scoring_run_id
    try:
        if training_run is None:
            raise ValueError(f"no training run recorded for {spec.name} v{run.model_version}")
        reference = feature_store.read_parquet(
            storage.location(runs_dir) / training_run / "split" / "valid.parquet",
            what=f"the validation split of {training_run}",
        )
        reference = reference.sample(n=min(len(reference), mon.max_rows), random_state=0)
        predictor = predictors.load_version(cfg, spec.name, run.model_version)
        # Only a sequence model reads the history; the tabular ones score the split's own feature columns.
        history = load_history(engine, spec.name) if predictor.kind == "dkt" else reference.iloc[:0]
        reference[SCORE] = predictor.predict(history, reference)
        current = _scored_rows(engine, scoring_run_id, runs_dir)
        if current.empty:
            raise ValueError(f"scoring run {scoring_run_id} has no predictions to compare")
        report = drift.drift_report(
            reference[columns],
            current[columns],
            columns,
            out_dir,
            max_drift_share=mon.max_drift_share,
            max_rows=mon.max_rows,
            title=f"{spec.name} v{run.model_version}: validation split ({training_run}) "
            f"vs scoring run {scoring_run_id}",
        )
        summary = dict(report.summary())
        summary["score_drifted"] = SCORE in report.drifted
        summary["reference"] = f"{training_run}/valid"
        result = MonitorResult(
            spec.name,
            scoring_run_id,
            "drift",
            str(run.model_version),
            "alarm" if report.dataset_drift else "ok",
            report.drift_share,
            mon.max_drift_share,
            summary,
            report.html_path,
        )
    except Exception as exc:  # noqa: BLE001 - a check that could not run is recorded as such, never as ok
        log.warning("drift check for %s failed: %s", scoring_run_id, exc)
        result = MonitorResult(
            spec.name,
            scoring_run_id,
            "drift",
            str(run.model_version),
            "not_evaluated",
            None,
            mon.max_drift_share,
            {"reason": str(exc)},
            None,
        )
    _record(engine, result, actor)
    log.info("drift check of %s: %s (%s)", scoring_run_id, result.status, result.value)
    return result


def _approval_auc(engine: Engine, model: str, version: str, approval_id: str | None) -> tuple[float, str]:
    """The champion's test AUC as the approver saw it (the approval evidence), else as training recorded it."""
    with engine.connect() as conn:
        evidence = (
            conn.execute(
                select(approval_requests.c.evidence).where(approval_requests.c.id == approval_id)
            ).scalar()
            if approval_id
            else None
        )
        cand = conn.execute(
            select(model_candidates.c.metrics).where(
                model_candidates.c.model == model, model_candidates.c.model_version == version
            )
        ).scalar()
    for source, body in ((f"approval {approval_id}", evidence), (f"model_candidates v{version}", cand)):
        if isinstance(body, dict):
            metrics = body.get("metrics") if "candidate" in body else body.get("candidates")
            chosen = body.get("candidate") or body.get("chosen")
            auc = ((metrics or {}).get(chosen) or {}).get("test_auc")
            if auc is not None:
                return float(auc), source
    raise ValueError(f"no test AUC recorded at approval for {model} v{version}")


def _published_runs(engine: Engine, model: str, version: str, window: int) -> list[dict[str, Any]]:
    """The champion's newest published scoring runs, one per partition, at most ``window`` partitions.

    Published means ``scoring_runs.status == 'succeeded'`` (the partition's visible set); rows of running, failed or
    superseded runs are never read, whatever the predictions table still holds."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(scoring_runs.c.run_id, scoring_runs.c.partition_key)
            .where(
                scoring_runs.c.model == model,
                scoring_runs.c.model_version == version,
                scoring_runs.c.status == "succeeded",
            )
            .order_by(scoring_runs.c.finished_at.desc(), scoring_runs.c.run_id.desc())
        ).all()
    runs: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.partition_key not in runs:
            runs[r.partition_key] = {"run_id": r.run_id, "partition_key": r.partition_key}
        if len(runs) == window:
            break
    return list(runs.values())


def _labeled_predictions(
    engine: Engine, model: str, run_ids: list[str], labeled_version_id: str
) -> pd.DataFrame:
    """Predictions of those runs whose event has a trusted label in the labeled version; newest run per event."""
    order = {r: i for i, r in enumerate(run_ids)}  # newest first
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                predictions.c.event_id,
                predictions.c.score,
                predictions.c.scoring_run_id,
                labels.c.label,
                labels.c.source,
            )
            .join(
                labels,
                (labels.c.event_id == predictions.c.event_id) & (labels.c.version_id == labeled_version_id),
            )
            .where(
                predictions.c.model == model,
                predictions.c.scoring_run_id.in_(run_ids),
                labels.c.source.in_(TRUSTED_SOURCES),
            )
        ).all()
    df = pd.DataFrame(rows, columns=["event_id", SCORE, "scoring_run_id", "label", "source"])
    df["_age"] = df["scoring_run_id"].map(order)
    return df.sort_values(["event_id", "_age"]).drop_duplicates("event_id").drop(columns="_age")


def _labeled_version(engine: Engine, spec: ModelSpec, labeled_version_id: str | None) -> Any:
    """The pinned labeled version (checked to be one of this model's), else the current one (None if none)."""
    from airgate.core import datasets

    labeled = (
        datasets.get(engine, labeled_version_id)
        if labeled_version_id
        else datasets.current(engine, spec.name, "labeled")
    )
    if labeled_version_id and (labeled is None or labeled.kind != "labeled" or labeled.model != spec.name):
        raise ValueError(f"{labeled_version_id} is not a labeled version of {spec.name}")
    return labeled


def _decay_drop(engine: Engine, spec: ModelSpec, champ: Any, vid: str, summary: dict[str, Any]) -> float:
    """Approval AUC minus the AUC on the labeled predictions; fills ``summary`` as it goes. A ValueError says why
    the check cannot be evaluated."""
    mon = spec.monitoring
    approval_auc, reference = _approval_auc(engine, spec.name, champ.version, champ.approval_id)
    summary.update(approval_auc=approval_auc, reference=reference)
    runs = _published_runs(engine, spec.name, champ.version, mon.decay_window_partitions)
    run_ids = [r["run_id"] for r in runs]
    summary.update(
        scoring_run_ids=run_ids,
        partitions=[r["partition_key"] for r in runs],
        newest_scoring_run_id=run_ids[0] if run_ids else None,
    )
    rows = _labeled_predictions(engine, spec.name, run_ids, vid) if run_ids else pd.DataFrame()
    summary["labeled_rows"] = len(rows)
    if len(rows) < mon.min_labeled_rows:
        raise ValueError(
            f"{len(rows)} published predictions of v{champ.version} have a trusted label in {vid}; "
            f"decay needs at least {mon.min_labeled_rows}"
        )
    summary["by_source"] = {str(k): int(v) for k, v in rows["source"].value_counts().sort_index().items()}
    if rows["label"].nunique() < 2:
        raise ValueError(f"all {len(rows)} labeled predictions have the same label: AUC is undefined")
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(rows["label"].astype(int), rows[SCORE].astype(float)))
    drop = approval_auc - auc
    summary.update(auc=auc, drop=drop)
    return drop


def check_decay(
    engine: Engine, spec: ModelSpec, labeled_version_id: str | None = None, actor: str = "airflow"
) -> MonitorResult:
    """Has the approved champion decayed? AUC on its newest published predictions that now have trusted labels
    (ground truth, late, human; never auto-labels), against its test AUC at approval. Alarm when the drop exceeds
    ``monitoring.max_auc_drop``; ``not_evaluated`` (never ok) below ``monitoring.min_labeled_rows`` labeled
    predictions, without a champion, or with one class only. Re-runnable: the verdict for the same labeled version
    and champion is replaced. ``labeled_version_id`` defaults to the current labeled version."""
    from airgate.governance import promotion

    mon = spec.monitoring
    labeled = _labeled_version(engine, spec, labeled_version_id)
    vid = labeled.version_id if labeled else "none"
    champ = promotion.current_champion(engine, spec.name)
    version = champ.version if champ else "none"
    key = f"{vid}@v{version}"
    summary: dict[str, Any] = {"labeled_version_id": vid, "min_labeled_rows": mon.min_labeled_rows}
    try:
        if labeled is None:
            raise ValueError(f"{spec.name} has no labeled version yet")
        if champ is None:
            raise ValueError(f"{spec.name} has no approved champion")
        drop = _decay_drop(engine, spec, champ, vid, summary)
        result = MonitorResult(
            spec.name,
            key,
            DECAY,
            version,
            "alarm" if drop > mon.max_auc_drop else "ok",
            drop,
            mon.max_auc_drop,
            summary,
            None,
        )
    except ValueError as exc:  # a check that could not run is recorded as such, never as ok
        summary["reason"] = str(exc)
        result = MonitorResult(
            spec.name, key, DECAY, version, "not_evaluated", None, mon.max_auc_drop, summary, None
        )
    entity = {
        "labeled_version_id": vid,
        "model_version": version,
        "scoring_run_id": summary.get("newest_scoring_run_id"),
    }
    _record(engine, result, actor, entity)
    log.info(
        "decay check of %s on %s: %s (%s)", version, vid, result.status, summary.get("reason") or result.value
    )
    return result


def reports(engine: Engine, model: str, limit: int = 100) -> list[dict[str, Any]]:
    """The newest monitoring verdicts of ``model``."""
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                select(monitoring_reports)
                .where(monitoring_reports.c.model == model)
                .order_by(monitoring_reports.c.id.desc())
                .limit(limit)
            ).mappings()
        ]
