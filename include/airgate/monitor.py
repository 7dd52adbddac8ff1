"""Monitoring after each scoring run: is what the champion now sees still what it was approved on?

Drift compares the rows just scored (their features and the champion's scores) with the champion's own validation
split scored by the same predictor: out-of-sample on both sides, so a confident model does not look drifted
against its own training rows. The Evidently report is stored beside the runs, the verdict goes to the warehouse
(one row per scoring run and check, replaced on a re-run) and to the audit log; an alarm is a separate
``drift_alarm`` event, the one that retraining listens for.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from airgate import audit, predictors, registry
from airgate.spec import ModelSpec
from airgate.warehouse import model_candidates, monitoring_reports, predictions, scoring_runs, utcnow

log = logging.getLogger(__name__)

SCORE = "score"


@dataclass(frozen=True)
class MonitorResult:
    model: str
    scoring_run_id: str
    kind: str
    model_version: str
    status: str  # ok | alarm | not_evaluated
    value: float | None
    threshold: float
    summary: dict[str, Any]
    report_path: str | None

    @property
    def alarm(self) -> bool:
        return self.status == "alarm"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _record(engine: Engine, result: MonitorResult, actor: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(monitoring_reports).where(monitoring_reports.c.scoring_run_id == result.scoring_run_id,
                                                      monitoring_reports.c.kind == result.kind))
        conn.execute(monitoring_reports.insert().values(
            model=result.model, scoring_run_id=result.scoring_run_id, kind=result.kind,
            model_version=result.model_version, status=result.status, value=result.value,
            threshold=result.threshold, summary=result.summary, report_path=result.report_path,
            created_at=utcnow()))
        entity = {"scoring_run_id": result.scoring_run_id, "model_version": result.model_version}
        details = {"status": result.status, "value": result.value, "threshold": result.threshold,
                   **{k: v for k, v in result.summary.items() if k in ("drifted", "columns_checked", "reason")}}
        audit.append(conn, actor=actor, event_type=f"{result.kind}_check", model=result.model, entity=entity,
                     details=details)
        if result.alarm:
            audit.append(conn, actor=actor, event_type=f"{result.kind}_alarm", model=result.model, entity=entity,
                         details=details)


def _scored_rows(engine: Engine, spec: ModelSpec, run_id: str, history: pd.DataFrame) -> pd.DataFrame:
    from airgate.features import build_features

    with engine.connect() as conn:
        scored = pd.DataFrame(conn.execute(select(predictions.c.event_id, predictions.c.score).where(
            predictions.c.model == spec.name, predictions.c.scoring_run_id == run_id)).all(),
            columns=["event_id", SCORE])
    feats = build_features(history)
    return scored.merge(feats, on="event_id", how="inner")


def check_drift(engine: Engine, spec: ModelSpec, cfg: registry.MlflowConfig, scoring_run_id: str, runs_dir: str,
                actor: str = "airflow") -> MonitorResult:
    """Drift of one scoring run's features and scores against the champion's validation split. Re-runnable."""
    from airgate import drift
    from airgate.features import load_history
    from airgate.gates import DRIFT_FEATURES

    mon = spec.monitoring
    with engine.connect() as conn:
        run = conn.execute(select(scoring_runs).where(scoring_runs.c.run_id == scoring_run_id)).one()
        training_run = conn.execute(select(model_candidates.c.training_run_id).where(
            model_candidates.c.model == spec.name, model_candidates.c.model_version == run.model_version)).scalar()
    columns = [*DRIFT_FEATURES, SCORE]
    out_dir = Path(runs_dir) / "monitoring" / scoring_run_id
    try:
        if training_run is None:
            raise ValueError(f"no training run recorded for {spec.name} v{run.model_version}")
        history = load_history(engine, spec.name)
        reference = pd.read_parquet(Path(runs_dir) / training_run / "split" / "valid.parquet")
        reference = reference.sample(n=min(len(reference), mon.max_rows), random_state=0)
        predictor = predictors.load_version(cfg, spec.name, run.model_version)
        reference[SCORE] = predictor.predict(history, reference)
        current = _scored_rows(engine, spec, scoring_run_id, history)
        if current.empty:
            raise ValueError(f"scoring run {scoring_run_id} has no predictions to compare")
        report = drift.drift_report(reference[columns], current[columns], columns, out_dir,
                                    max_drift_share=mon.max_drift_share, max_rows=mon.max_rows,
                                    title=f"{spec.name} v{run.model_version}: validation split ({training_run}) "
                                          f"vs scoring run {scoring_run_id}")
        summary = dict(report.summary())
        summary["score_drifted"] = SCORE in report.drifted
        summary["reference"] = f"{training_run}/valid"
        result = MonitorResult(spec.name, scoring_run_id, "drift", str(run.model_version),
                               "alarm" if report.dataset_drift else "ok", report.drift_share, mon.max_drift_share,
                               summary, report.html_path)
    except Exception as exc:  # noqa: BLE001 - a check that could not run is recorded as such, never as ok
        log.warning("drift check for %s failed: %s", scoring_run_id, exc)
        result = MonitorResult(spec.name, scoring_run_id, "drift", str(run.model_version), "not_evaluated", None,
                               mon.max_drift_share, {"reason": str(exc)}, None)
    _record(engine, result, actor)
    log.info("drift check of %s: %s (%s)", scoring_run_id, result.status, result.value)
    return result


def reports(engine: Engine, model: str, limit: int = 100) -> list[dict[str, Any]]:
    """The newest monitoring verdicts of ``model``."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(monitoring_reports).where(monitoring_reports.c.model == model)
                                              .order_by(monitoring_reports.c.id.desc()).limit(limit)).mappings()]
