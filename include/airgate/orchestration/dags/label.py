"""The label DAG: late grades and review answers, then the next labeled version; until there is a champion,
new labels request training (``airgate.serving.retraining``)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from airgate.core.spec import ModelSpec
from airgate.orchestration.dags.common import START, actor, airflow_run_id, assets, defaults, doc, tags


def _schedule(spec: ModelSpec) -> Any:
    """New clean data, or also the clock when the policy has a schedule: late grades and review answers arrive on
    their own time."""
    clean = assets(spec)["clean"]
    if spec.label_policy.schedule:
        return AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(spec.label_policy.schedule, timezone="UTC"), assets=clean
        )
    return [clean]


def build(spec: ModelSpec) -> DAG:
    a = assets(spec)
    policy = spec.label_policy

    @dag(
        dag_id=spec.dag_id("label"),
        schedule=_schedule(spec),
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=defaults(spec),
        tags=tags(spec, "label"),
        doc_md=doc(
            spec,
            "label",
            "Collects late grades and review answers (label files), then builds the next "
            "labeled version: ground truth, late, human and (from the approved champion, at confidence "
            f">= {policy.auto_label_min_confidence}) auto labels, each with provenance; queues the "
            f"{policy.review_budget} most uncertain unlabeled rows for people.",
        ),
    )
    def label() -> None:
        @task(outlets=[a["labeled"]])
        def build_labeled_version() -> dict[str, Any]:
            """Late grades and review answers first (label files, each once), then the next labeled version: one
            task, since the version needs the files and a hop between them costs a task start under a scheduler."""
            from airgate.core.settings import mlflow_config, resolve_path, warehouse_engine
            from airgate.data import labeling as stage
            from airgate.serving.autolabel import champion_predictor

            engine = warehouse_engine()
            dirs = {
                source: resolve_path(path)
                for source, path in (("late", policy.late_labels_path), ("human", policy.reviews_path))
                if path
            }
            done = stage.label_round(
                engine, spec, dirs, champion_predictor(engine, spec, mlflow_config()), actor=actor()
            )
            if not done.result.created:
                raise AirflowSkipException(
                    f"no new clean data and no new label events (label files: {done.label_files})"
                )
            return done.summary()

        @task.short_circuit
        def no_champion_yet(labeled: dict[str, Any]) -> bool:
            """Until something is approved, new labels start training; afterwards monitoring decides."""
            from airgate.core.settings import warehouse_engine
            from airgate.serving import retraining

            return retraining.after_new_labels(
                warehouse_engine(), spec, actor=actor(), airflow_run_id=airflow_run_id()
            ).request

        @task(outlets=[a["retrain"]])
        def request_training() -> None:
            """The retrain Asset event starts the train DAG on the newest labeled version."""

        no_champion_yet(build_labeled_version()) >> request_training()  # type: ignore[arg-type]

    return label()
