"""The score DAG's decisions for one night: score, skip (nothing approved yet) or refuse, and the shards to map.

``scoring.plan`` raises ``NoChampion`` or ``NotApproved``; this module turns those into a typed outcome that is
already on the record (``scoring_skipped`` / ``scoring_refused``), so the task only translates it into Airflow's
terms. The mapped scorers (tasks or pods) get one small ``ShardPart`` each: ids, never data.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.engine import Engine

from airgate.serving import scoring


@dataclass(frozen=True)
class ShardPart:
    """What one mapped scorer needs: the run and its shard (the plan file in storage holds the rest)."""

    scoring_run_id: str
    shard: int
    rows: int
    model_version: str
    approval_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NightPlan:
    """The outcome of planning a night: ``planned`` with its parts, or ``skipped`` / ``refused`` with why."""

    action: Literal["planned", "skipped", "refused"]
    scoring_run_id: str
    reason: str = ""
    parts: list[ShardPart] = field(default_factory=list)


def night_run_id(when: datetime) -> str:
    """A fresh id per attempt: the published predictions of a date stay visible until the new run swaps in."""
    return f"sr-{when:%Y%m%d}-{uuid.uuid4().hex[:10]}"


def parts_of(plan: scoring.ScorePlan) -> list[ShardPart]:
    return [
        ShardPart(plan.scoring_run_id, s.index, s.rows, plan.model_version, plan.approval_id)
        for s in plan.shards
    ]


def plan_night(engine: Engine, cfg: scoring.ScoreConfig) -> NightPlan:
    """Plan the run. No champion yet: the night is skipped and recorded, nobody alerted (a first deployment);
    a version the ledger does not show approved: refused and recorded, and the run fails loudly."""
    try:
        plan = scoring.plan(engine, cfg)
    except scoring.NoChampion as exc:
        scoring.skip_night(
            engine, cfg.spec, cfg.scoring_run_id, str(exc), actor=cfg.actor, airflow_run_id=cfg.airflow_run_id
        )
        return NightPlan("skipped", cfg.scoring_run_id, str(exc))
    except scoring.NotApproved as exc:
        scoring.refuse(engine, cfg.spec, cfg.scoring_run_id, str(exc), actor=cfg.actor)
        return NightPlan("refused", cfg.scoring_run_id, str(exc))
    return NightPlan("planned", plan.scoring_run_id, parts=parts_of(plan))
