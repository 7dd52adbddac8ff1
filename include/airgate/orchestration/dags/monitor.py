"""The monitor DAG: on every new labeled version, has the champion decayed? An alarm may request retraining."""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, dag, task

from airgate.core.spec import ModelSpec
from airgate.orchestration.dags.common import (
    START,
    actor,
    assets,
    defaults,
    doc,
    gate_on_verdict,
    request_retraining,
    run_conf,
    tags,
)


def _doc(spec: ModelSpec) -> str:
    mon = spec.monitoring
    return doc(
        spec,
        "monitor",
        "Runs on every new labeled version (late grades, review answers, new graded data): "
        "the AUC of the approved champion's newest published predictions "
        f"(up to {mon.decay_window_partitions} partitions) on the rows that now have a trusted label, "
        f"against its test AUC at approval. A drop of more than {mon.max_auc_drop} is a decay alarm, which "
        "updates the retrain Asset and so starts the train DAG; fewer than "
        f"{mon.min_labeled_rows} labeled predictions is not evaluated. A run can be pinned with "
        "`labeled_version_id` in its conf.",
    )


def build(spec: ModelSpec) -> DAG:
    a = assets(spec)

    @dag(
        dag_id=spec.dag_id("monitor"),
        schedule=[a["labeled"]],
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=defaults(spec),
        tags=tags(spec, "monitor"),
        doc_md=_doc(spec),
    )
    def monitor() -> None:
        @task
        def check_decay() -> dict[str, Any]:
            from airgate.core.settings import warehouse_engine
            from airgate.serving import monitoring as stage

            pinned = run_conf().get("labeled_version_id")
            return stage.check_decay(warehouse_engine(), spec, pinned, actor=actor()).to_dict()

        @task(trigger_rule="all_done")
        def anchor_audit() -> int | None:
            """The periodic anchor of the audit log (storage and the registry), whatever the verdict: it also
            covers a governance change whose own anchor failed (``airgate.core.audit_anchor``)."""
            from airgate.core import audit_anchor
            from airgate.core.settings import mlflow_config, warehouse_engine

            head = audit_anchor.anchor(warehouse_engine(), mlflow_config())
            return head.seq if head else None

        verdict = check_decay()
        decayed = gate_on_verdict(spec, "decayed")
        decayed(verdict) >> request_retraining(spec, "decay", a["retrain"])(verdict)
        verdict >> anchor_audit()  # beside the short-circuit gate, which would skip everything below it

    return monitor()
