"""The collect DAG: wait for new data (files in the landing zone, or rows above a SQL watermark), ingest it as
raw dataset versions, update the raw Asset."""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, PokeReturnValue, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airgate.core.spec import ModelSpec
from airgate.orchestration.dags.common import START, actor, assets, defaults, doc, tags


def _what(spec: ModelSpec) -> str:
    src = spec.source
    if src.kind == "sql":
        return (
            f"Waits until at least {src.min_new_rows} rows above the watermark `{src.watermark_column}` exist "
            f"in `{src.table}` (connection `{src.conn_id}`), then ingests them as one raw dataset version; the "
            "watermark advances in the same transaction."
        )
    return (
        f"Waits (deferred, in the triggerer) for new files matching `{src.pattern}` in the landing zone "
        f"`{src.path}`, then ingests each one exactly once as a raw dataset version (file ledger keyed by "
        "path and SHA-256)."
    )


def _sql_tasks(spec: ModelSpec) -> None:
    src = spec.source

    @task.sensor(
        task_id="wait_for_new_rows",
        poke_interval=src.poke_interval_s,
        timeout=src.sensor_timeout_s,
        mode="reschedule",
        soft_fail=True,
    )
    def wait_for_new_rows() -> PokeReturnValue:
        from airgate.core.settings import source_engine, warehouse_engine
        from airgate.data import collect_sql

        n = collect_sql.count_new_rows(warehouse_engine(), source_engine(src.conn_id or ""), spec)
        return PokeReturnValue(is_done=n >= src.min_new_rows, xcom_value=n)

    @task(outlets=[assets(spec)["raw"]])
    def ingest_rows(waiting: int) -> dict[str, Any]:
        from airgate.core.settings import source_engine, warehouse_engine
        from airgate.data import collect_sql

        out = collect_sql.ingest_new_rows(
            warehouse_engine(), source_engine(src.conn_id or ""), spec, actor=actor()
        )
        if out.status != "ingested":
            raise AirflowSkipException(f"no new batch: {out.status}")
        return out.__dict__

    ingest_rows(wait_for_new_rows())  # type: ignore[arg-type]


def _file_tasks(spec: ModelSpec) -> None:
    from airgate.orchestration.sensors import LandingZoneSensor

    src = spec.source
    wait = LandingZoneSensor(
        task_id="wait_for_new_files",
        model=spec.name,
        landing=src.path,
        pattern=src.pattern,
        poke_interval=src.poke_interval_s,
        timeout=src.sensor_timeout_s,
        mode="reschedule",
        soft_fail=True,
        deferrable=src.deferrable,
    )

    @task(outlets=[assets(spec)["raw"]])
    def ingest(paths: list[str]) -> dict[str, Any]:
        from airgate.core.settings import resolve_location, warehouse_engine
        from airgate.data import collect as stage

        done = stage.ingest_sensed(
            warehouse_engine(), spec, resolve_location(src.path), list(paths or []), actor=actor()
        )
        if done.action == "unreadable":
            raise AirflowFailException(done.reason)
        if done.action == "nothing_new":
            raise AirflowSkipException(done.reason)
        return done.summary()

    ingest(wait.output)  # type: ignore[arg-type]  # TaskFlow passes an XComArg


def _retention_task(spec: ModelSpec) -> None:
    """``privacy.retention_days``: raw rows and landing files past it are purged, audited, on every poll (a no-op
    query when nothing expired), beside the ingest and independent of the sensor."""

    @task
    def purge_expired() -> dict[str, Any]:
        from airgate.core.settings import warehouse_engine
        from airgate.core.warehouse import utcnow
        from airgate.data import retention

        result = retention.purge(warehouse_engine(), spec, utcnow(), actor=actor())
        return {
            "status": result.status,
            "rows": result.rows,
            "versions": [v.version_id for v in result.versions],
        }

    purge_expired()


def build(spec: ModelSpec) -> DAG:
    @dag(
        dag_id=spec.dag_id("collect"),
        schedule=spec.source.poll_schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=defaults(spec),
        tags=tags(spec, "collect"),
        doc_md=doc(spec, "collect", _what(spec) + " Updates the raw Asset."),
    )
    def collect() -> None:
        if spec.source.kind == "sql":
            _sql_tasks(spec)
        else:
            _file_tasks(spec)
        if spec.privacy.retention_days is not None:
            _retention_task(spec)

    return collect()
