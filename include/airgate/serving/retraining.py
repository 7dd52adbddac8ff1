"""What starts training, decided once per trigger so that each one does real work exactly once.

Three things may start the train DAG, all through the ``retrain`` Asset or the clock:

* **new labels, only until there is a champion** (the label DAG asks): a first deployment trains as soon as data
  is labeled, and keeps trying on new labels while nothing is approved and no request waits for a decision;
* **an alarm** (drift after scoring, decay after late labels), only when labeled data newer than what the champion
  was trained on exists: retraining on the champion's own data would give the same model again;
* **the clock** (``monitoring.retrain_schedule``): the train DAG itself skips data it already trained on.

Once a champion exists, new labels alone do not retrain: monitoring decides. That keeps a drift batch from being
trained on twice (once because it was labeled, once because it drifted), and it keeps a repeated alarm, on data
the new champion already learned, from starting a run that can only skip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate.core import audit, datasets
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import model_candidates
from airgate.governance import promotion

if TYPE_CHECKING:
    from airgate.serving.monitoring import MonitorResult


@dataclass(frozen=True)
class TrainingDecision:
    request: bool
    reason: str  # why (or why not), in words an operator reads in the audit log
    labeled_version_id: str | None
    champion_version: str | None = None
    champion_data_version: str | None = None


def champion_data_version(engine: Engine, model: str, version: str) -> str | None:
    """The labeled version the registered model ``version`` was trained on."""
    with engine.connect() as conn:
        return conn.execute(
            select(model_candidates.c.data_version)
            .where(model_candidates.c.model == model, model_candidates.c.model_version == str(version))
            .order_by(model_candidates.c.id.desc())
            .limit(1)
        ).scalar()


def on_new_labels(engine: Engine, spec: ModelSpec) -> TrainingDecision:
    """New labels start training only while there is no champion and no request waits for a decision."""
    labeled = datasets.current(engine, spec.name, "labeled")
    vid = labeled.version_id if labeled else None
    if vid is None:
        return TrainingDecision(False, "no labeled version yet", None)
    champ = promotion.current_champion(engine, spec.name)
    if champ is not None:
        return TrainingDecision(
            False,
            f"v{champ.version} is the champion: monitoring decides when it is retrained, not every new label",
            vid,
            champ.version,
        )
    pending = promotion.list_requests(engine, spec.name, status="pending", limit=1)
    if pending:
        return TrainingDecision(
            False, f"request {pending[0]['id']} (v{pending[0]['model_version']}) awaits a decision", vid
        )
    return TrainingDecision(True, "no champion yet: train on the newest labels", vid)


def on_alarm(engine: Engine, spec: ModelSpec, kind: str) -> TrainingDecision:
    """An alarm asks for retraining only when there are labels the champion has not been trained on."""
    labeled = datasets.current(engine, spec.name, "labeled")
    vid = labeled.version_id if labeled else None
    champ = promotion.current_champion(engine, spec.name)
    if champ is None:
        return TrainingDecision(vid is not None, f"{kind} alarm without a champion", vid)
    trained_on = champion_data_version(engine, spec.name, champ.version)
    if vid is None or vid == trained_on:
        return TrainingDecision(
            False,
            f"{kind} alarm, but champion v{champ.version} was trained on the newest "
            f"labeled version ({trained_on}): retraining would learn nothing new; "
            "it is retrained when new labels arrive and the alarm persists",
            vid,
            champ.version,
            trained_on,
        )
    return TrainingDecision(
        True,
        f"{kind} alarm, and labeled version {vid} is newer than champion "
        f"v{champ.version}'s training data ({trained_on})",
        vid,
        champ.version,
        trained_on,
    )


def record(
    engine: Engine,
    spec: ModelSpec,
    decision: TrainingDecision,
    *,
    trigger: str,
    actor: str,
    entity: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Audit the decision: ``retraining_requested`` or ``retraining_not_requested``, with its reason."""
    event = "retraining_requested" if decision.request else "retraining_not_requested"
    audit.record(
        engine,
        actor=actor,
        event_type=event,
        model=spec.name,
        entity={
            "labeled_version_id": decision.labeled_version_id,
            "model_version": decision.champion_version,
            **(entity or {}),
        },
        details={
            "reason": trigger,
            "why": decision.reason,
            "champion_data_version": decision.champion_data_version,
            **(details or {}),
        },
    )


def after_new_labels(
    engine: Engine, spec: ModelSpec, *, actor: str, airflow_run_id: str | None
) -> TrainingDecision:
    """The label DAG's question: do these labels start training? Only a request is recorded: every label run
    that finds a champion would otherwise add a ``retraining_not_requested`` event that nobody needs."""
    decision = on_new_labels(engine, spec)
    if decision.request:
        record(
            engine,
            spec,
            decision,
            trigger="no_champion",
            actor=actor,
            details={"airflow_run_id": airflow_run_id},
        )
    return decision


def _alarm_evidence(verdict: MonitorResult) -> tuple[dict[str, Any], dict[str, Any]]:
    """(entity, details) of the audit record: what the alarm was about, and the figures that raised it."""
    details: dict[str, Any] = {"value": verdict.value, "threshold": verdict.threshold}
    if (
        verdict.kind == "decay"
    ):  # a decay verdict is keyed by labels, so the newest scored run names the entity
        summary = verdict.summary
        entity = {"scoring_run_id": summary.get("newest_scoring_run_id")}
        details.update(auc=summary.get("auc"), approval_auc=summary.get("approval_auc"))
        return entity, details
    return {"scoring_run_id": verdict.scoring_run_id}, details


def answer_verdict(
    engine: Engine, spec: ModelSpec, verdict: MonitorResult, *, actor: str
) -> TrainingDecision:
    """A monitoring verdict's consequence: an alarm retrains only when there are labels the champion was not
    trained on, and that decision is recorded either way; a verdict that is no alarm decides nothing (not recorded:
    the check itself is already on the record)."""
    if not verdict.alarm:
        return TrainingDecision(False, f"{verdict.kind} check: {verdict.status}, no alarm", None)
    decision = on_alarm(engine, spec, verdict.kind)
    entity, details = _alarm_evidence(verdict)
    record(engine, spec, decision, trigger=verdict.kind, actor=actor, entity=entity, details=details)
    return decision


@dataclass(frozen=True)
class TrainingStart:
    """What a train DAG run does with the labeled version it was asked to train on."""

    action: Literal["train", "skip", "refuse"]
    reason: str
    labeled_version_id: str | None = None


def _labeled_to_train(engine: Engine, spec: ModelSpec, pinned: str | None) -> TrainingStart:
    """The pinned labeled version (a run's conf may name one), else the current one."""
    labeled = datasets.get(engine, pinned) if pinned else datasets.current(engine, spec.name, "labeled")
    if pinned and (labeled is None or labeled.kind != "labeled" or labeled.model != spec.name):
        return TrainingStart("refuse", f"pinned version {pinned} is not a labeled version of {spec.name}")
    if labeled is None:
        return TrainingStart("skip", "no labeled dataset version yet")
    return TrainingStart("train", "", labeled.version_id)


def start_training(
    engine: Engine,
    spec: ModelSpec,
    *,
    training_run_id: str,
    code_version: str,
    pinned: str | None = None,
    force: bool = False,
    actor: str = "airflow",
    airflow_run_id: str | None = None,
) -> TrainingStart:
    """Train, skip or refuse. A trigger (drift, decay, the weekly cron) on a labeled version already trained with
    this spec and code has nothing new to learn from: it is skipped, and the skip is audited
    (``training_skipped``) so the trigger's outcome is on the record. A pinned or forced run always trains."""
    from airgate.model import training

    start = _labeled_to_train(engine, spec, pinned)
    if start.action != "train" or pinned or force:
        return start
    vid = str(start.labeled_version_id)
    done = training.already_trained(engine, spec, vid, code_version)
    if done is None or done["training_run_id"] == training_run_id:  # the same run retried: carry on
        return start
    why = (
        f"labeled version {vid} was already trained by {done['training_run_id']} (status {done['status']}) with "
        'this spec and code; run with conf {"force": true} to train anyway'
    )
    audit.record(
        engine,
        actor=actor,
        event_type="training_skipped",
        model=spec.name,
        entity={"data_version": vid, "training_run_id": done["training_run_id"]},
        details={"reason": why, "airflow_run_id": airflow_run_id},
    )
    return TrainingStart("skip", why, vid)
