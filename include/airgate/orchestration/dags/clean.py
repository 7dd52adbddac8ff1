"""The clean DAG: raw versions to clean versions (quarantine with reason codes), Great Expectations validation,
then each version's point-in-time features, materialized once for nightly scoring."""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airgate.core.spec import ModelSpec
from airgate.orchestration.dags.common import START, actor, assets, defaults, doc, tags

DOC = (
    "Turns every raw version not yet cleaned into a clean version; each rejected row goes to quarantine with a "
    "reason code. rows in = accepted + quarantined. Then validates each clean version with Great Expectations "
    "(suite built from the spec): a critical failure stops the downstream DAGs; warnings pass and are kept as "
    "evidence with GX Data Docs. Then computes each version's point-in-time features once, as the files nightly "
    "scoring reads."
)


def build(spec: ModelSpec) -> DAG:
    a = assets(spec)

    @dag(
        dag_id=spec.dag_id("clean"),
        schedule=[a["raw"]],
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=defaults(spec),
        tags=tags(spec, "clean"),
        doc_md=doc(spec, "clean", DOC),
    )
    def clean() -> None:
        @task
        def clean_batches() -> dict[str, Any]:
            from airgate.core.settings import warehouse_engine
            from airgate.data import clean as stage

            result = stage.clean_pending(warehouse_engine(), spec, actor=actor())
            failed = [f.__dict__ for f in result.failed]
            if not result.versions and failed:
                raise AirflowFailException(f"no raw version could be cleaned: {failed}")
            if not result.versions:
                raise AirflowSkipException("no raw version waiting to be cleaned")
            return {
                "clean_version_ids": result.clean_version_ids,
                "batches": [v.__dict__ for v in result.versions],
                "failed": failed,
            }

        @task(outlets=[a["clean"]])
        def validate_batches(cleaned: dict[str, Any]) -> dict[str, Any]:
            from airgate.core.settings import warehouse_engine
            from airgate.data import checks

            outcomes = checks.validate_pending(warehouse_engine(), spec, actor=actor())
            failed = checks.blocking_failures(outcomes)
            if failed:
                raise AirflowFailException(f"critical data validation failures, downstream stopped: {failed}")
            return checks.summary(outcomes)

        @task
        def materialize_features(validated: dict[str, Any]) -> dict[str, Any]:
            """Each new clean version's point-in-time features, once: nightly scoring reads these files."""
            from airgate.core.settings import runs_dir, warehouse_engine
            from airgate.data import feature_store

            return feature_store.materialize_versions(
                warehouse_engine(), spec, list(validated), runs_dir(), actor=actor()
            )

        @task
        def report_unreadable(cleaned: dict[str, Any], features: dict[str, Any]) -> None:
            """A raw version that could not be cleaned at all stays pending (audited as clean_failed) and fails
            the run once the versions behind it are cleaned, validated and featurized: seen, never blocking."""
            if cleaned.get("failed"):
                raise AirflowFailException(f"raw versions left pending, not cleanable: {cleaned['failed']}")

        cleaned = clean_batches()
        report_unreadable(cleaned, materialize_features(validate_batches(cleaned)))  # type: ignore[arg-type]

    return clean()
