"""The score DAG: plan the night (only the approved champion), score each shard (a mapped task, or a Kubernetes
pod), publish the run in one swap, then check drift; an alarm may request retraining."""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airgate.core.spec import ModelSpec
from airgate.orchestration.dags.common import (
    START,
    actor,
    assets,
    defaults,
    doc,
    gate_on_verdict,
    request_retraining,
    tags,
)


def _doc(spec: ModelSpec) -> str:
    sc = spec.scoring
    where = "one Kubernetes pod" if sc.pods else "one mapped task"
    return doc(
        spec,
        "score",
        f"Nightly batch scoring into `{sc.destination}`. `plan` resolves the `champion` alias "
        "once, refuses any version the promotion ledger does not show approved, and writes the "
        f"point-in-time features as {sc.partitions} shards split by student; {where} per shard scores it "
        f"in chunks of {sc.chunk_rows:,} rows; `publish` swaps the run in as the logical date's only "
        "predictions in one transaction. Then an Evidently drift check against the champion's validation "
        "split; an alarm updates the retrain Asset, which starts the train DAG.",
    )


def _plan_task(spec: ModelSpec) -> Any:
    @task
    def plan() -> list[dict[str, Any]]:
        """One dict per shard (what the mapped scorers or pods need): the expansion is over this list."""
        from airgate.core.settings import mlflow_config, runs_dir, warehouse_engine
        from airgate.serving import nightly
        from airgate.serving.scoring import ScoreConfig

        dr = get_current_context()["dag_run"]
        when = dr.logical_date or dr.run_after
        cfg = ScoreConfig(
            spec,
            mlflow_config(),
            when.strftime("%Y-%m-%d"),
            nightly.night_run_id(when),
            runs_dir(),
            actor=actor(),
            airflow_run_id=dr.run_id,
        )
        night = nightly.plan_night(warehouse_engine(), cfg)
        if night.action == "skipped":
            raise AirflowSkipException(night.reason)
        if night.action == "refused":
            raise AirflowFailException(night.reason)
        parts = [p.to_dict() for p in night.parts]
        if spec.scoring.pods:
            from airgate.orchestration import kube

            return kube.with_pods(spec, parts)
        return parts

    return plan


def _scorers(spec: ModelSpec, planned: Any) -> Any:
    """One pod or one mapped task per planned shard."""
    if spec.scoring.pods:
        from airgate.orchestration import kube

        return kube.score_pod_operator(spec, planned.map(kube.pod_of_part))

    @task(map_index_template="shard {{ part['shard'] }}")
    def score_partition(part: dict[str, Any]) -> dict[str, Any]:
        from airgate.core.settings import mlflow_config, runs_dir, warehouse_engine
        from airgate.serving import scoring as stage

        return stage.score_shard(
            warehouse_engine(), mlflow_config(), runs_dir(), part["scoring_run_id"], part["shard"]
        ).to_dict()

    return score_partition.expand(part=planned)


def build(spec: ModelSpec) -> DAG:
    from airgate.orchestration import alerts

    a = assets(spec)

    @dag(
        dag_id=spec.dag_id("score"),
        schedule=spec.scoring.schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=defaults(spec),
        tags=tags(spec, "score"),
        **alerts.score_dag_kwargs(spec),
        doc_md=_doc(spec),
    )
    def score() -> None:
        @task
        def publish(parts: list[dict[str, Any]]) -> dict[str, Any]:
            from airgate.core.settings import warehouse_engine
            from airgate.serving import scoring as stage

            try:
                return stage.publish(
                    warehouse_engine(), spec, parts[0]["scoring_run_id"], actor=actor()
                ).to_dict()
            except stage.PublishRefused as exc:
                raise AirflowFailException(str(exc)) from exc

        @task
        def monitor_drift(scored: dict[str, Any]) -> dict[str, Any]:
            from airgate.core.settings import mlflow_config, runs_dir, warehouse_engine
            from airgate.serving import monitoring

            return monitoring.check_drift(
                warehouse_engine(), spec, mlflow_config(), scored["scoring_run_id"], runs_dir(), actor=actor()
            ).to_dict()

        planned = _plan_task(spec)()
        published = publish(planned)
        _scorers(spec, planned) >> published
        verdict = monitor_drift(published)  # type: ignore[arg-type]
        drifted = gate_on_verdict(spec, "drifted")
        drifted(verdict) >> request_retraining(spec, "drift", a["retrain"])(verdict)

    return score()
