"""Monitoring reports: the verdict of one drift or decay check, as stored in monitoring_reports and the audit log.
``monitoring`` runs the checks."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from airgate.core import audit, storage
from airgate.core.warehouse import (
    monitoring_reports,
    predictions,
    utcnow,
)
from airgate.data import feature_store

SCORE = "score"
DECAY = "decay"
# Summary keys that also go into the audit event (the rest stays in monitoring_reports).
_AUDITED = ("drifted", "columns_checked", "reason", "auc", "approval_auc", "labeled_rows")


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MonitorResult:
        """The verdict back from its XCom (``to_dict``), for the stage that acts on it."""
        return cls(**d)


def _record(engine: Engine, result: MonitorResult, actor: str, entity: dict[str, Any] | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(
            delete(monitoring_reports).where(
                monitoring_reports.c.scoring_run_id == result.scoring_run_id,
                monitoring_reports.c.kind == result.kind,
            )
        )
        conn.execute(
            monitoring_reports.insert().values(
                model=result.model,
                scoring_run_id=result.scoring_run_id,
                kind=result.kind,
                model_version=result.model_version,
                status=result.status,
                value=result.value,
                threshold=result.threshold,
                summary=result.summary,
                report_path=result.report_path,
                created_at=utcnow(),
            )
        )
        entity = entity or {"scoring_run_id": result.scoring_run_id, "model_version": result.model_version}
        details = {
            "status": result.status,
            "value": result.value,
            "threshold": result.threshold,
            **{k: v for k, v in result.summary.items() if k in _AUDITED},
        }
        audit.append(
            conn,
            actor=actor,
            event_type=f"{result.kind}_check",
            model=result.model,
            entity=entity,
            details=details,
        )
        if result.alarm:
            audit.append(
                conn,
                actor=actor,
                event_type=f"{result.kind}_alarm",
                model=result.model,
                entity=entity,
                details=details,
            )


def _scored_rows(engine: Engine, run_id: str, runs_dir: storage.Location) -> pd.DataFrame:
    """The run's rows as it scored them: the features its plan wrote (not computed a second time) and the scores
    it published."""
    from airgate.core.warehouse import bulk_read_tuples
    from airgate.serving import scoring

    plan = scoring.load_plan(runs_dir, run_id)
    feats = pd.concat(
        [feature_store.read_parquet(s.path, what=f"a feature shard of {run_id}") for s in plan.shards],
        ignore_index=True,
    )
    with engine.connect() as conn:
        cols, data = bulk_read_tuples(
            conn,
            select(predictions.c.event_id, predictions.c.score).where(predictions.c.scoring_run_id == run_id),
        )
    if isinstance(data, bytes):
        scored = pd.read_csv(
            io.BytesIO(data), names=["event_id", SCORE], header=None, dtype={"event_id": str}
        )
    else:
        scored = pd.DataFrame(data, columns=["event_id", SCORE])
    return scored.merge(feats, on="event_id", how="inner")
