"""Builds every DAG of one model spec: ``build_all(spec)``. Wiring only: each DAG kind is a module of
``airgate.orchestration.dags`` whose task bodies call one stage function each and translate its typed outcome.

Imported at DAG-parse time. Nothing heavy is imported here or at module level of anything this imports: each task
imports its stage module when it runs. Tasks hand each other ids (dataset versions, run ids, model versions),
never data.

The DAGs of a model (ids ``<model>__<stage>``) are chained by Assets:
collect -> raw -> clean -> clean -> label -> labeled -> monitor (decay), and label -> retrain -> train while there
is no champion yet -> (approval in the plugin); score runs on its cron (plan -> one task or pod per shard -> publish
-> drift check); a drift or decay alarm updates retrain when there are labels the champion has not been trained on
(``airgate.serving.retraining``), which starts train again (so does monitoring.retrain_schedule).

Pools: the training tasks (``train_candidate``, ``select_and_test``) run in pool="airgate_training"
(``dags.common.TRAINING_POOL``), which airflow_settings.yaml defines.
"""

from __future__ import annotations

from collections.abc import Callable

from airflow.sdk import DAG

from airgate.core.spec import ModelSpec
from airgate.orchestration.dags import clean, collect, label, monitor, score, train
from airgate.orchestration.dags.common import STAGES, START, assets
from airgate.orchestration.dags.common import defaults as _defaults

__all__ = [
    "BUILDERS",
    "START",
    "STAGES",
    "_defaults",
    "assets",
    "build_all",
    "build_clean",
    "build_collect",
    "build_label",
    "build_monitor",
    "build_score",
    "build_train",
]

build_collect = collect.build
build_clean = clean.build
build_label = label.build
build_train = train.build
build_score = score.build
build_monitor = monitor.build

BUILDERS: dict[str, Callable[[ModelSpec], DAG]] = {
    "collect": build_collect,
    "clean": build_clean,
    "label": build_label,
    "train": build_train,
    "score": build_score,
    "monitor": build_monitor,
}


def build_all(spec: ModelSpec) -> dict[str, DAG]:
    return {spec.dag_id(stage): BUILDERS[stage](spec) for stage in STAGES}
