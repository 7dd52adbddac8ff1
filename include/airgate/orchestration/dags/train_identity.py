"""The train DAG's identity record, read from each task's own dag run: never from an upstream XCom.

``prepare_split`` records who started the run (``airgate.core.run_identity``); every later task derives the
training run's id from its *own* ``dag_run`` and reads the record back. The user comes from the dag run's
``triggering_user_name``, which the api-server sets from the authenticated user when the run is triggered (UI,
REST, an asset event posted by a user, a backfill) and which no public API can change afterwards: ``PATCH
/dags/{dag_id}/dagRuns/{run_id}`` accepts only ``state`` and ``note``. Runs nobody triggered by hand (the
scheduler's cron, an asset event from another DAG) carry no user and are answered for by the spec's owner.

``dag.test()`` (Airflow 3.3, ``airflow/sdk/definitions/dag.py``) creates its run with ``triggered_by=TEST`` and the
made-up ``triggering_user_name="dag_test"``: no one authenticated. Such a run, recognised by that name *and* by the
task running under Airflow's in-process test supervisor, is recorded as ``run_type="dag_test"`` with no
``triggered_by``, so its trainer is the spec's owner, not a user named "dag_test".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException

from airgate.core.spec import ModelSpec

if TYPE_CHECKING:  # the record's module (SQLAlchemy tables) is imported when a task runs, not at DAG parse
    from airgate.core.run_identity import RunIdentity

DAG_TEST_USER = "dag_test"  # what Airflow 3.3's dag.test() writes as the run's triggering user
DAG_TEST_RUN_TYPE = "dag_test"


def _in_dag_test() -> bool:
    """True when this task runs under ``dag.test()``'s in-process supervisor (no worker, no api-server)."""
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms
    except ImportError:  # pragma: no cover - a Task SDK without the in-process supervisor
        return False
    return isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), InProcessSupervisorComms)


def _run_type(dr: Any) -> str:
    rt = getattr(dr, "run_type", None)
    return str(getattr(rt, "value", rt) or "unknown")


def identity_of_run(spec: ModelSpec, dr: Any, labeled_version_id: str) -> RunIdentity:
    """The identity record for ``dr`` as Airflow reports it (``dag.test()``'s placeholder user set aside)."""
    from airgate.core.run_identity import RunIdentity, training_run_id

    user = getattr(dr, "triggering_user_name", None) or None
    run_type = _run_type(dr)
    if user == DAG_TEST_USER and _in_dag_test():
        user, run_type = None, DAG_TEST_RUN_TYPE
    return RunIdentity(
        training_run_id=training_run_id(spec.name, str(dr.run_id)),
        model=spec.name,
        dag_id=str(dr.dag_id),
        airflow_run_id=str(dr.run_id),
        run_type=run_type,
        triggered_by=user,
        owner=spec.owner,
        labeled_version_id=str(labeled_version_id),
    )


def own_training_run_id(spec: ModelSpec) -> str:
    """This task's training run id, from its own dag run (the formula ``prepare_split`` used)."""
    from airgate.core.run_identity import training_run_id

    return training_run_id(spec.name, str(get_current_context()["dag_run"].run_id))


def own_identity(spec: ModelSpec, engine: Any) -> RunIdentity:
    """The identity record of this task's own training run; the task fails when there is none."""
    from airgate.core.run_identity import load_identity

    run_id = own_training_run_id(spec)
    ident = load_identity(engine, run_id)
    if ident is None or ident.model != spec.name:
        raise AirflowFailException(
            f"training run {run_id} has no identity record; prepare_split writes it first"
        )
    return ident
