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
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate.core import audit, datasets
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import model_candidates
from airgate.governance import promotion


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
        return conn.execute(select(model_candidates.c.data_version).where(
            model_candidates.c.model == model, model_candidates.c.model_version == str(version))
            .order_by(model_candidates.c.id.desc()).limit(1)).scalar()


def on_new_labels(engine: Engine, spec: ModelSpec) -> TrainingDecision:
    """New labels start training only while there is no champion and no request waits for a decision."""
    labeled = datasets.current(engine, spec.name, "labeled")
    vid = labeled.version_id if labeled else None
    if vid is None:
        return TrainingDecision(False, "no labeled version yet", None)
    champ = promotion.current_champion(engine, spec.name)
    if champ is not None:
        return TrainingDecision(False, f"v{champ.version} is the champion: monitoring decides when it is "
                                       "retrained, not every new label", vid, champ.version)
    pending = promotion.list_requests(engine, spec.name, status="pending", limit=1)
    if pending:
        return TrainingDecision(False, f"request {pending[0]['id']} (v{pending[0]['model_version']}) awaits a "
                                       "decision", vid)
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
        return TrainingDecision(False, f"{kind} alarm, but champion v{champ.version} was trained on the newest "
                                       f"labeled version ({trained_on}): retraining would learn nothing new; "
                                       "it is retrained when new labels arrive and the alarm persists",
                                vid, champ.version, trained_on)
    return TrainingDecision(True, f"{kind} alarm, and labeled version {vid} is newer than champion "
                                  f"v{champ.version}'s training data ({trained_on})", vid, champ.version, trained_on)


def record(engine: Engine, spec: ModelSpec, decision: TrainingDecision, *, trigger: str, actor: str,
           entity: dict[str, Any] | None = None, details: dict[str, Any] | None = None) -> None:
    """Audit the decision: ``retraining_requested`` or ``retraining_not_requested``, with its reason."""
    event = "retraining_requested" if decision.request else "retraining_not_requested"
    audit.record(engine, actor=actor, event_type=event, model=spec.name,
                 entity={"labeled_version_id": decision.labeled_version_id,
                         "model_version": decision.champion_version, **(entity or {})},
                 details={"reason": trigger, "why": decision.reason,
                          "champion_data_version": decision.champion_data_version, **(details or {})})
