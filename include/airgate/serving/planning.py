"""Planning a scoring night: the champion checked once against the ledger, the run started (an unpublished earlier
one abandoned), the rows cut into shards, the plan written for the workers. ``scoring`` scores the shards and
publishes."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Engine

from airgate.core import audit, datasets, registry, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import predictions, scoring_runs, utcnow
from airgate.data import feature_store
from airgate.data.features import load_history
from airgate.governance import promotion
from airgate.model import predictors

log = logging.getLogger(__name__)
PRED_COLUMNS = [
    "model",
    "partition_key",
    "event_id",
    "student_id",
    "item_id",
    "score",
    "model_version",
    "approval_id",
    "scoring_run_id",
    "feature_data_version",
    "shard",
]
HISTORY_COLUMNS = ["event_id", "student_id", "item_id", "skill_id", "ts", "correct"]


class NotApproved(RuntimeError):
    """The model version asked to score is not the ledger's approved champion."""


class NoChampion(NotApproved):
    """Nothing has been approved yet: a first deployment's nights are skipped and recorded, not failed."""


class PublishRefused(RuntimeError):
    """The run cannot become the partition's predictions (rows missing, or the champion changed meanwhile)."""


@dataclass(frozen=True)
class ScoreConfig:
    spec: ModelSpec
    mlflow: registry.MlflowConfig
    partition_key: str
    scoring_run_id: str
    runs_dir: storage.Location = ""  # "" = runtime.runs_dir(): runs/ under AIRGATE_STORAGE_URL
    feature_version_id: str | None = None
    model_version: str | None = None  # None: whatever the champion alias names now
    actor: str = "airflow"
    airflow_run_id: str | None = None
    partitions: int | None = None  # None: spec.scoring.partitions

    @property
    def runs(self) -> storage.StoragePath:
        if isinstance(self.runs_dir, str) and not self.runs_dir:
            from airgate.core.settings import runs_dir

            return storage.location(runs_dir())
        return storage.location(self.runs_dir)


@dataclass(frozen=True)
class Shard:
    index: int
    path: str
    rows: int
    history_path: str | None = None  # only for models that read the history (DKT)


@dataclass(frozen=True)
class ScorePlan:
    scoring_run_id: str
    model: str
    partition_key: str
    model_version: str
    approval_id: str
    model_kind: str
    feature_data_version: str
    chunk_rows: int
    shards: list[Shard] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # where the plan's time went (features, shards)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScorePlan:
        return cls(**{**d, "shards": [Shard(**s) for s in d["shards"]]})


@dataclass(frozen=True)
class ShardResult:
    scoring_run_id: str
    shard: int
    rows: int
    seconds: float
    peak_chunk_rows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScoreResult:
    scoring_run_id: str
    model: str
    partition_key: str
    model_version: str
    approval_id: str
    feature_data_version: str
    rows_scored: int
    superseded: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_dir(runs_dir: storage.Location, scoring_run_id: str) -> storage.StoragePath:
    return storage.location(runs_dir) / "scoring" / scoring_run_id


def plan_path(runs_dir: storage.Location, scoring_run_id: str) -> storage.StoragePath:
    return run_dir(runs_dir, scoring_run_id) / "plan.json"


def resolve_champion(
    engine: Engine, spec: ModelSpec, cfg: registry.MlflowConfig, requested_version: str | None = None
) -> tuple[str, str]:
    """(version, approval_id) to score with; raises NotApproved with the reason otherwise."""
    version = requested_version or registry.alias_version(cfg, spec.name)
    if version is None:
        raise NoChampion(
            f"model '{spec.name}' has no champion yet: approve a version in the Governance view first"
        )
    approval_id = promotion.approved_version(engine, spec.name, version)
    if approval_id is None:
        champ = promotion.current_champion(engine, spec.name)
        raise NotApproved(
            f"refusing to score with {spec.name} v{version}: the promotion ledger does not show it as the approved "
            f"champion (ledger champion: {('v' + champ.version) if champ else 'none'})"
        )
    return str(version), approval_id


def _abandon_unpublished(
    conn: Connection, model: str, partition_key: str, keep: str, reason: str
) -> list[str]:
    """Runs of this partition that never published (killed, or refused): their rows go, their status says so."""
    stale = list(
        conn.execute(
            select(scoring_runs.c.run_id).where(
                scoring_runs.c.model == model,
                scoring_runs.c.partition_key == partition_key,
                scoring_runs.c.status == "running",
                scoring_runs.c.run_id != keep,
            )
        ).scalars()
    )
    if stale:
        conn.execute(delete(predictions).where(predictions.c.scoring_run_id.in_(stale)))
        conn.execute(
            update(scoring_runs)
            .where(scoring_runs.c.run_id.in_(stale))
            .values(status="abandoned", finished_at=utcnow(), reason=reason)
        )
    return stale


def _start_run(
    engine: Engine,
    cfg: ScoreConfig,
    version: str,
    approval_id: str,
    kind: str,
    feature_version: str,
    shards: int,
) -> None:
    """Record the run as ``running`` (a re-plan restarts it) and abandon the partition's unpublished runs."""
    spec = cfg.spec
    with engine.begin() as conn:
        stale = _abandon_unpublished(
            conn,
            spec.name,
            cfg.partition_key,
            cfg.scoring_run_id,
            f"superseded before publishing by {cfg.scoring_run_id}",
        )
        conn.execute(delete(predictions).where(predictions.c.scoring_run_id == cfg.scoring_run_id))
        conn.execute(delete(scoring_runs).where(scoring_runs.c.run_id == cfg.scoring_run_id))
        conn.execute(
            scoring_runs.insert().values(
                run_id=cfg.scoring_run_id,
                model=spec.name,
                partition_key=cfg.partition_key,
                model_version=version,
                approval_id=approval_id,
                feature_data_version=feature_version,
                status="running",
                started_at=utcnow(),
                airflow_run_id=cfg.airflow_run_id,
                shards=shards,
            )
        )
        audit.append(
            conn,
            actor=cfg.actor,
            event_type="scoring_started",
            model=spec.name,
            entity={
                "scoring_run_id": cfg.scoring_run_id,
                "model_version": version,
                "approval_id": approval_id,
                "feature_data_version": feature_version,
            },
            details={
                "partition_key": cfg.partition_key,
                "shards": shards,
                "model_kind": kind,
                "abandoned_runs": stale,
            },
        )


def _shards(engine: Engine, cfg: ScoreConfig, fs: feature_store.FeatureSet, kind: str) -> list[Shard]:
    """The feature set's shards; for a sequence model (DKT) each with its students' whole history beside it."""
    out = run_dir(cfg.runs, cfg.scoring_run_id)
    history = load_history(engine, cfg.spec.name) if kind == "dkt" else None
    shards: list[Shard] = []
    for fsh in fs.shards:
        hist_path = None
        if (
            history is not None
        ):  # the sequence model reads each student's whole history, not the feature columns
            students = set(feature_store.read_parquet(fsh.path, columns=["student_id"])["student_id"])
            hist_path = out / f"shard-{fsh.index:03d}.history.parquet"
            feature_store.write_parquet(
                history.loc[history["student_id"].isin(students), HISTORY_COLUMNS],
                hist_path,
                cfg.spec.scoring.chunk_rows,
            )
        shards.append(
            Shard(fsh.index, fsh.path, fsh.rows, storage.as_string(hist_path) if hist_path else None)
        )
    return shards


def plan(engine: Engine, cfg: ScoreConfig) -> ScorePlan:
    """Resolve the champion once, record it, and write the shards to score. Re-running it restarts the run."""
    spec = cfg.spec
    version, approval_id = resolve_champion(engine, spec, cfg.mlflow, cfg.model_version)
    kind = registry.version_tags(cfg.mlflow, spec.name, version).get(predictors.KIND_TAG, "lightgbm")
    target = (
        datasets.get(engine, cfg.feature_version_id)
        if cfg.feature_version_id
        else datasets.latest(engine, spec.name, "clean", with_rows=True)
    )
    if target is None:
        raise ValueError(f"no clean dataset version to score for {spec.name}")
    n = cfg.partitions or spec.scoring.partitions
    _start_run(engine, cfg, version, approval_id, kind, target.version_id, n)

    # The one feature path: the clean version's materialized features (computed by build_features, the function
    # training uses, once per version: the clean DAG usually has); the shards are those files, not copies.
    t0 = time.perf_counter()
    fs = feature_store.materialize(engine, spec, target.version_id, cfg.runs, n, actor=cfg.actor)
    t_features = time.perf_counter() - t0
    shards = _shards(engine, cfg, fs, kind)
    result = ScorePlan(
        cfg.scoring_run_id,
        spec.name,
        cfg.partition_key,
        version,
        approval_id,
        kind,
        target.version_id,
        spec.scoring.chunk_rows,
        shards,
        {"features": round(t_features, 3), "shards": round(time.perf_counter() - t0 - t_features, 3)},
    )
    storage.write_text_atomic(plan_path(cfg.runs, cfg.scoring_run_id), json.dumps(result.to_dict(), indent=1))
    with engine.begin() as conn:
        conn.execute(
            update(scoring_runs)
            .where(scoring_runs.c.run_id == cfg.scoring_run_id)
            .values(rows_expected=result.rows)
        )
    log.info(
        "planned %s: %d rows of %s in %d shards for %s v%s (approval %s)",
        cfg.scoring_run_id,
        result.rows,
        target.version_id,
        n,
        spec.name,
        version,
        approval_id,
    )
    return result


def load_plan(runs_dir: storage.Location, scoring_run_id: str) -> ScorePlan:
    text = storage.read_text(
        plan_path(runs_dir, scoring_run_id),
        what=f"the plan of scoring run {scoring_run_id}: run its plan step first",
    )
    return ScorePlan.from_dict(json.loads(text))
