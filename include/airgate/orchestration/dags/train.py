"""The train DAG: split the labeled version, train every candidate (mapped tasks or Kubernetes pods), select and
test one, gate it, register it and open an approval request. Approval happens in the Governance view."""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airgate.core.spec import ModelSpec
from airgate.orchestration.dags import train_identity
from airgate.orchestration.dags.common import (
    START,
    TRAINING_POOL,
    actor,
    assets,
    defaults,
    doc,
    run_conf,
    tags,
)


def train_config(spec: ModelSpec, labeled_version_id: str, training_run_id: str, trained_by: str) -> Any:
    from airgate.core.settings import code_version, mlflow_config, runs_dir
    from airgate.model import training as stage

    return stage.TrainConfig(
        spec, labeled_version_id, training_run_id, trained_by, mlflow_config(), runs_dir(), code_version()
    )


def own_train_config(spec: ModelSpec) -> Any:
    """This task's training config: run id from its own dag run, trainer and labeled version from the run's
    identity record (never from an XCom, which any op user can rewrite)."""
    from airgate.core.settings import warehouse_engine

    ident = train_identity.own_identity(spec, warehouse_engine())
    return train_config(spec, ident.labeled_version_id, ident.training_run_id, ident.trained_by)


def schedule(spec: ModelSpec) -> Any:
    """The retrain Asset only (asked for by the label DAG until there is a champion, then by drift and decay
    alarms: ``airgate.serving.retraining``); with ``monitoring.retrain_schedule``, the clock too."""
    retrain = assets(spec)["retrain"]
    cron = spec.monitoring.retrain_schedule
    if cron:
        return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=retrain)
    return [retrain]


def _doc(spec: ModelSpec) -> str:
    names = [c.name for c in spec.candidates]
    return doc(
        spec,
        "train",
        "Splits the newest labeled version (or the one pinned in the run's conf as "
        "`labeled_version_id`), trains and tunes every candidate in parallel (one mapped task each"
        f"{', as Kubernetes pods' if spec.kubernetes else ''}: {', '.join(names)}), picks one by the "
        "spec's rule from the Pareto front, reads the test split once, gates it against the baseline "
        "and the champion, registers it in MLflow and opens an approval request. Approval itself "
        "happens in the Governance view, by someone other than the trainer.",
    )


def _prepare_split_task(spec: ModelSpec) -> Any:
    @task
    def prepare_split() -> dict[str, Any]:
        """Starts the run and writes its identity record once; the returned XCom is informative only."""
        from airgate.core.run_identity import load_identity, record_identity
        from airgate.core.settings import code_version, warehouse_engine
        from airgate.model import training as stage
        from airgate.serving import retraining

        dr = get_current_context()["dag_run"]
        conf = run_conf()
        engine = warehouse_engine()
        run_id = train_identity.own_training_run_id(spec)
        recorded = load_identity(engine, run_id)  # a retry keeps the version its first try recorded
        start = retraining.start_training(
            engine,
            spec,
            training_run_id=run_id,
            code_version=code_version(),
            pinned=recorded.labeled_version_id if recorded else conf.get("labeled_version_id"),
            force=bool(conf.get("force")),
            actor=actor(),
            airflow_run_id=dr.run_id,
        )
        if start.action == "refuse":
            raise AirflowFailException(start.reason)
        if start.action == "skip":
            raise AirflowSkipException(start.reason)
        ident = record_identity(
            engine, train_identity.identity_of_run(spec, dr, str(start.labeled_version_id))
        )
        cfg = train_config(spec, ident.labeled_version_id, ident.training_run_id, ident.trained_by)
        manifest = stage.prepare(engine, cfg)
        return {
            "training_run_id": run_id,
            "labeled_version_id": ident.labeled_version_id,
            "trained_by": ident.trained_by,
            "rows": manifest.rows,
            "split_hash": manifest.split_hash,
        }

    return prepare_split


def _candidates(spec: ModelSpec, split: Any) -> Any:
    """One mapped task or one pod per candidate; their full results are files of the run, not XComs."""
    if spec.kubernetes is not None:
        from airgate.orchestration import kube

        # Sets prepare_split >> pods itself; the pods' results reach select_and_test through the run's files.
        return kube.candidate_pod_operator(spec, upstream_task_id="prepare_split").output

    @task(pool=TRAINING_POOL, map_index_template="{{ candidate }}")
    def train_candidate(split: dict[str, Any], candidate: str) -> dict[str, Any]:
        from airgate.core.settings import warehouse_engine
        from airgate.model import training as stage

        cfg = own_train_config(
            spec
        )  # ``split`` orders this task after prepare_split; nothing is read from it
        r = stage.train_candidate(warehouse_engine(), cfg, candidate)
        return r.xcom()

    return train_candidate.partial(split=split).expand(candidate=[c.name for c in spec.candidates])


def build(spec: ModelSpec) -> DAG:
    names = [c.name for c in spec.candidates]

    @dag(
        dag_id=spec.dag_id("train"),
        schedule=schedule(spec),
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=defaults(spec),
        tags=tags(spec, "train"),
        doc_md=_doc(spec),
    )
    def train() -> None:
        @task(pool=TRAINING_POOL)
        def select_and_test(split: dict[str, Any], trained: list[Any]) -> dict[str, Any]:
            from airgate.core.settings import warehouse_engine
            from airgate.model import training as stage

            cfg = own_train_config(spec)  # the XComs order the task; identity comes from the run's record
            # Each candidate's full result (every trial) is a file of the run in storage, not an XCom: tasks pass ids.
            results = [stage.load_result(cfg, n) for n in names]
            result = stage.finalize(warehouse_engine(), cfg, results)
            return {
                "training_run_id": result.training_run_id,
                "data_version": result.data_version,
                "chosen": result.chosen,
                "test_auc": result.metrics[result.chosen]["test_auc"],
                "pareto_size": result.pareto.get("size"),
            }

        @task
        def validate(trained: dict[str, Any]) -> dict[str, Any]:
            from airgate.core.settings import mlflow_config, runs_dir, warehouse_engine
            from airgate.model import gates

            report = gates.validate(
                warehouse_engine(),
                spec,
                mlflow_config(),
                train_identity.own_identity(spec, warehouse_engine()).training_run_id,
                runs_dir(),
                actor=actor(),
            )
            if not report.approvable:
                raise AirflowFailException(f"gates failed, candidate cannot be approved: {report.failures}")
            return {
                "training_run_id": report.training_run_id,
                "evidence_hash": report.evidence_hash,
                "gates": {g.name: g.state.value for g in report.gates},
            }

        @task
        def register_and_request_approval(validated: dict[str, Any]) -> dict[str, Any]:
            from airgate.core.settings import mlflow_config, warehouse_engine
            from airgate.governance import registration

            engine = warehouse_engine()
            run_id = train_identity.own_identity(spec, engine).training_run_id
            return registration.register_and_request(
                engine, spec, mlflow_config(), run_id, actor=actor(), require_identity=True
            )

        split = _prepare_split_task(spec)()
        register_and_request_approval(validate(select_and_test(split, _candidates(spec, split))))  # type: ignore[arg-type]

    from airgate.orchestration.dags.approval_step import with_approval_step

    return with_approval_step(
        spec, train()
    )  # register_and_request_approval >> await_approval >> confirm_champion
