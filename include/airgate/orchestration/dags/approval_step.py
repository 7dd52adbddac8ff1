"""Approval as a visible step of the train DAG: ``register_and_request_approval >> await_approval >>
confirm_champion``.

``await_approval`` is deferred while the request is pending (the run page shows it "deferred": awaiting approval),
so it holds no worker slot; its trigger (``orchestration.approval_trigger``) polls the request's status in the
warehouse from the triggerer. The request is the one opened for this run's training run, whose id the task derives
from its own dag run (``run_identity.training_run_id``), never from an XCom a user could edit. Its outcome:

- approved: ``confirm_champion`` checks that the promotion ledger's champion is this version by this request and
  that the MLflow alias agrees, and audits ``deployed``;
- rejected or superseded: ``await_approval`` is skipped with the reason in its log, and so is everything after it;
- expired (a pending request past ``expires_at``) or no request at all: ``await_approval`` fails (no retry), so
  the spec's failure alerts fire. The deferral's timeout is the request's expiry (plus a grace period, so the
  trigger's own "expired" verdict, with its reason, normally comes first).

Governance notices (``alerts.on_governance``, ``governance.notices``) go out when the step first sees the request
(opened), when ``alerts.expiry_warning_fraction`` of its lifetime is left (about to expire; the task then defers
again) and when it is decided or expires.

Why not Airflow's HITL (``ApprovalOperator``/``HITLOperator``): it takes one response per task instance (no quorum),
its responders are Airflow users with no separation of duties from the trainer or evidence hash, and on
``response_timeout`` it applies its *defaults* with no responder, which would turn an expiry into an approval.
airgate's rules (``governance.decisions``) decide; this step only waits for their verdict.

Under ``dag.test()`` the trigger runs inline and would wait until someone decides: pass
``mark_success_pattern=DAG_TEST_MARK_SUCCESS`` (as the demo and most dag.test end-to-end tests do) and decide
through the plugin API afterwards, or decide from another thread while it polls (``AIRGATE_APPROVAL_POLL_SECONDS``;
``tests/e2e/test_dag_test.py`` does that once, so the whole step runs under dag.test too).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, BaseOperator, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airgate.core.spec import ModelSpec

AWAIT_TASK = "await_approval"
CONFIRM_TASK = "confirm_champion"
UPSTREAM_TASK = "register_and_request_approval"
# For dag.test(mark_success_pattern=...): the inline trigger would wait for a decision nobody can make meanwhile.
DAG_TEST_MARK_SUCCESS = f"{AWAIT_TASK}|{CONFIRM_TASK}"
POLL_ENV = "AIRGATE_APPROVAL_POLL_SECONDS"
DEFAULT_POLL_SECONDS = 30.0
# The deferral's timeout is the request's expiry plus this, so the trigger's "expired" verdict normally comes first.
EXPIRY_GRACE = timedelta(minutes=5)


def poll_seconds() -> float:
    """How often the trigger looks at the request (``AIRGATE_APPROVAL_POLL_SECONDS``, default 30 s)."""
    try:
        return max(0.1, float(os.environ.get(POLL_ENV, DEFAULT_POLL_SECONDS)))
    except ValueError:
        return DEFAULT_POLL_SECONDS


def this_training_run(spec: ModelSpec, context: Any) -> str:
    """The training run of this dag run, derived from the run itself (never from an upstream XCom)."""
    from airgate.core.run_identity import training_run_id

    return training_run_id(spec.name, str(context["dag_run"].run_id))


def _notify(spec: ModelSpec, kind: str, verdict: Any, training_run: str) -> None:
    from airgate.core.settings import warehouse_engine
    from airgate.governance import notices

    details = {
        "request_id": verdict.request_id,
        "version": verdict.model_version,
        "training_run_id": training_run,
        "outcome": verdict.outcome,
        "expires_at": verdict.expires_at,
    }
    notices.notify(warehouse_engine(), spec, kind, f"{spec.name}: {verdict.reason}", details)


class AwaitApprovalOperator(BaseOperator):
    """Waits, deferred, for the decision on this run's approval request. Returns ``{request_id, model_version,
    status}`` when approved; skips (rejected, superseded) or fails (expired, no request) otherwise."""

    ui_color = "#fde68a"

    def __init__(self, *, spec: ModelSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec

    def _check(self, training_run: str, warned: bool) -> Any:
        from airgate.core.settings import warehouse_engine
        from airgate.governance import approval_wait

        return approval_wait.check(
            warehouse_engine(),
            training_run,
            warning_fraction=self.spec.alerts.expiry_warning_fraction,
            warned=warned,
        )

    def execute(self, context: Any) -> dict[str, Any]:
        training_run = this_training_run(self.spec, context)
        verdict = self._check(training_run, warned=False)
        if verdict.outcome != "missing":
            _notify(self.spec, "approval_requested", verdict, training_run)
        return self._go_on(training_run, verdict)

    def resume(self, context: Any, event: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        """Back from the trigger: its event is the verdict it saw."""
        from airgate.governance.approval_wait import Verdict

        training_run = this_training_run(self.spec, context)
        if not event:
            raise AirflowFailException(f"the approval trigger of {training_run} fired with no verdict")
        return self._go_on(training_run, Verdict.from_event(event))

    def _go_on(self, training_run: str, verdict: Any) -> dict[str, Any]:
        """Notify and wait again on "warn", finish on a final verdict, else defer until the trigger sees one."""
        warned = False
        if verdict.outcome == "warn":
            _notify(self.spec, "approval_expiring", verdict, training_run)
            warned = True
            verdict = self._check(training_run, warned=True)
        if verdict.final:
            return self._finish(training_run, verdict)
        self.log.info("awaiting approval: %s (expires %s)", verdict.reason, verdict.expires_at)
        from airgate.core.warehouse import utcnow
        from airgate.orchestration.approval_trigger import ApprovalDecisionTrigger

        self.defer(
            trigger=ApprovalDecisionTrigger(
                training_run, self.spec.alerts.expiry_warning_fraction, warned, poll_seconds()
            ),
            method_name="resume",
            timeout=max(timedelta(seconds=1), verdict.expires_at - utcnow()) + EXPIRY_GRACE,
        )

    def _finish(self, training_run: str, verdict: Any) -> dict[str, Any]:
        if verdict.outcome == "missing":
            raise AirflowFailException(verdict.reason)
        kind = "approval_expired" if verdict.outcome == "expired" else "approval_decided"
        _notify(self.spec, kind, verdict, training_run)
        if verdict.outcome == "expired":
            raise AirflowFailException(f"{verdict.reason}: nobody decided in time; retrain or re-request")
        if verdict.outcome != "approved":
            raise AirflowSkipException(f"not deploying: {verdict.reason}")
        self.log.info("%s", verdict.reason)
        return {
            "request_id": verdict.request_id,
            "model_version": verdict.model_version,
            "status": "approved",
        }


def confirm(spec: ModelSpec, training_run: str, actor: str = "airflow") -> dict[str, Any]:
    """Check that the approved request's version is the ledger's champion and the MLflow alias agrees, then audit
    ``deployed``. Raises AirflowFailException naming the disagreement otherwise."""
    from airgate.core import audit, champion, registry
    from airgate.core.settings import mlflow_config, warehouse_engine
    from airgate.governance import approval_wait

    engine = warehouse_engine()
    state = approval_wait.request_for_run(engine, training_run)
    if state is None or state.status != "approved":
        raise AirflowFailException(f"training run {training_run} has no approved request ({state})")
    champ = champion.current_champion(engine, spec.name)
    if champ is None or champ.version != state.model_version or champ.approval_id != state.request_id:
        raise AirflowFailException(
            f"the promotion ledger's champion is {champ}, not v{state.model_version} by {state.request_id}"
        )
    alias = registry.alias_version(mlflow_config(), spec.name)
    if alias != state.model_version:
        raise AirflowFailException(
            f"the MLflow alias champion points at v{alias}, the ledger at v{state.model_version}"
        )
    entity = {"approval_request_id": state.request_id, "model_version": state.model_version}
    details = {"training_run_id": training_run, "alias": "champion", "ledger_action": champ.action}
    audit.record(engine, actor=actor, event_type="deployed", model=spec.name, entity=entity, details=details)
    return {**entity, "training_run_id": training_run}


def _confirm_task(spec: ModelSpec) -> Any:
    @task(task_id=CONFIRM_TASK)
    def confirm_champion() -> dict[str, Any]:
        return confirm(spec, this_training_run(spec, get_current_context()))

    return confirm_champion


def with_approval_step(spec: ModelSpec, dag: DAG) -> DAG:
    """Add ``await_approval >> confirm_champion`` after the DAG's ``register_and_request_approval``."""
    with dag:
        wait = AwaitApprovalOperator(task_id=AWAIT_TASK, spec=spec)
        dag.get_task(UPSTREAM_TASK) >> wait >> _confirm_task(spec)()
    return dag
