"""Great Expectations validation of every clean version, with a suite built from the spec (not by hand).

Critical expectations (schema, keys, types and ranges from the cleaning rules, the item catalog) stop the
downstream DAGs: a version that fails them is never labeled or trained on. Distribution shift against the previous
version (label mean, response-time median, skill mix as KL divergence), the share of unlabeled rows and
near-duplicate columns are warnings by default (``validation.shift_severity``): they pass, and are kept as evidence.
Results (JSON, ``validations/<model>/<version>/``) and GX Data Docs (HTML, in the model's GX project ``gx/<model>/``)
are in storage (``airgate.core.storage``, ``AIRGATE_STORAGE_URL``), so the approval page, served from another host, can
link to them. GX's file context wants a local folder: each validation brings the model's project down to scratch,
runs there, and puts back what changed. The clean DAG validates one model at a time, so nothing races for it.

GX runs where the rows are: a SQL datasource on the warehouse, one query asset (``clean_events`` of the version),
so its metrics are SQL aggregates and no row is copied into Python. The reference figures for the shift checks and
the near-duplicate-column check (GX has no correlation expectation) are aggregates too (``version_stats``). The
datasource's connection string is ``${AIRGATE_GX_WAREHOUSE_URL}``, set only while GX runs: the warehouse's
credentials never reach the project files in storage. A version with no rows (every row quarantined) is recorded
as ``empty``, without running GX: nothing to label, train on or compare against.
"""

from __future__ import annotations

import copy
import json
import logging
import numbers
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate.core import audit, datasets, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import clean_events, data_validations, utcnow
from airgate.data.clean import EVENT_COLUMNS
from airgate.data.expectations import (  # noqa: F401 - re-exported: callers import them from here
    EMPTY,
    MAX_RESPONSE_MS,
    ValidationOutcome,
    _previous_validated,
    build_expectations,
    duplicate_columns,
)
from airgate.data.version_stats import duplicate_columns_in, reference_stats, row_count

WAREHOUSE_URL_ENV = "AIRGATE_GX_WAREHOUSE_URL"
DATASOURCE = "warehouse"
EMPTY_NOTE = "0 rows: every row of the batch was quarantined; nothing to label, train on or compare against"

log = logging.getLogger(__name__)


def gx_project(model: str) -> storage.StoragePath:
    """The model's GX project (suites, checkpoints, results, Data Docs) in storage."""
    return storage.location("gx") / model


def results_file(model: str, version_id: str) -> storage.StoragePath:
    return storage.location("validations") / model / version_id / "results.json"


def _docs_location(model: str, project: Path, site_url: str) -> str:
    """Where the Data Docs index GX built in the local ``project`` lives once the project is back in storage."""
    local = Path(unquote(urlparse(site_url).path)).resolve()
    return storage.as_string(gx_project(model) / local.relative_to(project.resolve()).as_posix())


def validate_version(
    engine: Engine, spec: ModelSpec, version_id: str, actor: str = "airflow"
) -> ValidationOutcome:
    """Validate one clean version and record the outcome. Nothing of the version is read into Python: GX's
    expectations and the aggregates behind the shift and duplicate-column checks all run in the warehouse."""
    rows = row_count(engine, version_id)
    if rows == 0:
        return _finish(engine, spec, ValidationOutcome(version_id, EMPTY, note=EMPTY_NOTE), None, None, actor)
    os.environ.setdefault("TQDM_DISABLE", "1")
    import great_expectations as gx

    from airgate.data.clean import load_catalog

    small = rows < spec.validation.min_rows_for_shift  # too few rows for a shift to mean anything
    ref_id = None if small else _previous_validated(engine, spec, version_id)
    reference = reference_stats(engine, spec, ref_id) if ref_id else None
    suite = build_expectations(spec, reference, load_catalog(spec))
    with storage.scratch("gx-") as tmp, _warehouse_url(engine):
        project = tmp / spec.name
        # The project as the last validation left it; none yet before the model's first validation.
        before = storage.download_tree(gx_project(spec.name), project, missing_ok=True)
        run = GxRun(spec, version_id, _version_query(engine, version_id), suite, ref_id)
        # Counts and observed values first, without sample rows: on a version that passes, each row check's
        # sample query is a full scan that finds nothing. Only when a check fails is the suite run again to keep
        # up to 20 unexpected values per check as evidence (and in the Data Docs).
        result, docs_path = _run_gx(gx, run, project, samples=0)
        if not result.success:
            result, docs_path = _run_gx(gx, run, project, samples=20)
        storage.upload_tree(project, gx_project(spec.name), unchanged=before)
    dups = duplicate_columns_in(engine, version_id, spec.validation.duplicate_column_correlation)
    outcome = _outcome(spec, version_id, result, dups)
    outcome.docs_path = docs_path
    gx_result = result.describe_dict() if hasattr(result, "describe_dict") else None
    return _finish(engine, spec, outcome, ref_id, gx_result, actor)


def _finish(
    engine: Engine,
    spec: ModelSpec,
    outcome: ValidationOutcome,
    ref_id: str | None,
    gx_result: Any,
    actor: str,
) -> ValidationOutcome:
    """Keep the result (JSON in storage, the ``data_validations`` row, the audit event) and log it."""
    results_path = storage.write_text_atomic(
        results_file(spec.name, outcome.version_id),
        json.dumps(
            {
                "version_id": outcome.version_id,
                "reference_version": ref_id,
                "status": outcome.status,
                "note": outcome.note,
                "critical": outcome.critical,
                "warnings": outcome.warnings,
                "checks": outcome.checks,
                "gx": gx_result,
            },
            indent=2,
            default=str,
        ),
    )
    outcome.results_path = storage.as_string(results_path)
    _record(engine, spec, outcome, ref_id, actor)
    log.info(
        "validated %s: %s (%d critical, %d warnings)%s",
        outcome.version_id,
        outcome.status,
        len(outcome.critical),
        len(outcome.warnings),
        f" - {outcome.note}" if outcome.note else "",
    )
    return outcome


@dataclass(frozen=True)
class GxRun:
    """One version's validation: the SELECT GX reads it through, and the suite built for it."""

    spec: ModelSpec
    version_id: str
    query: str
    expectations: list[Any]
    reference_version: str | None


def _version_query(engine: Engine, version_id: str) -> str:
    """The version's rows as the clean frame had them (the spec's event columns), as SQL text for GX's query
    asset; the version id is bound as a literal by the warehouse's own dialect (quoted, never pasted)."""
    q = select(*[clean_events.c[c] for c in EVENT_COLUMNS]).where(clean_events.c.version_id == version_id)
    return str(q.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


@contextmanager
def _warehouse_url(engine: Engine) -> Iterator[None]:
    """``${AIRGATE_GX_WAREHOUSE_URL}`` for GX's datasource while it runs, then as it was before."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise ValueError(
            f"GX validation reads the warehouse through its own connection, and {url} is an in-memory SQLite "
            "database it cannot open: set AIRGATE_WAREHOUSE_URL to a file (sqlite:////path/warehouse.db)"
        )
    old = os.environ.get(WAREHOUSE_URL_ENV)
    os.environ[WAREHOUSE_URL_ENV] = url.render_as_string(hide_password=False)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(WAREHOUSE_URL_ENV, None)
        else:
            os.environ[WAREHOUSE_URL_ENV] = old


def _version_batch(ctx: Any, run: GxRun) -> Any:
    """The batch definition of the query asset, re-pointed at this version. One asset per model, so the project
    does not grow an asset per version; earlier results keep the query they ran in their batch spec."""
    ds = next((d for d in ctx.data_sources.all().values() if d.name == DATASOURCE), None)
    if ds is None:
        ds = ctx.data_sources.add_sql(name=DATASOURCE, connection_string="${" + WAREHOUSE_URL_ENV + "}")
    asset_name = f"{run.spec.name}_clean"
    if any(a.name == asset_name for a in ds.assets):
        ds.delete_asset(asset_name)
    asset = ds.add_query_asset(name=asset_name, query=run.query)
    return asset.add_batch_definition_whole_table("version")


def _run_gx(gx: Any, run: GxRun, project: Path, samples: int) -> tuple[Any, str | None]:
    """Run the suite with GX's file context in the local ``project``; (the validation result, the Data Docs index
    as it will be in storage)."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="file", project_root_dir=str(project))
    # GX draws progress bars on stderr, which task logs show as errors: a validation has nobody watching it.
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    bd = _version_batch(ctx, run)
    suite = ctx.suites.add_or_update(
        gx.ExpectationSuite(
            name=f"{run.spec.name}.{run.version_id}",
            expectations=[copy.copy(e) for e in run.expectations],  # a suite owns its expectations
            meta={"spec_hash": run.spec.spec_hash, "reference_version": run.reference_version},
        )
    )
    vd = ctx.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"vd.{run.version_id}", data=bd, suite=suite)
    )
    cp = ctx.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"cp.{run.version_id}",
            validation_definitions=[vd],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": samples},
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
        )
    )
    result = next(iter(cp.run().run_results.values()))
    docs = list(ctx.get_docs_sites_urls())
    return result, _docs_location(run.spec.name, project, docs[0]["site_url"]) if docs else None


def _outcome(spec: ModelSpec, version_id: str, result: Any, dups: list[str]) -> ValidationOutcome:
    """GX's result as pass / warn / fail, with each failed check in words, plus the near-duplicate columns."""
    outcome = ValidationOutcome(version_id, "pass")
    for r in result.results:
        cfg = r.expectation_config
        if cfg is None:  # GX always sets it for suite results; the type allows None
            continue
        severity = str(getattr(cfg, "severity", "critical")).split(".")[-1].lower()
        observed = r.result.get("observed_value")
        check = {
            "expectation": cfg.type,
            "column": cfg.kwargs.get("column"),
            "severity": severity,
            "success": bool(r.success),
            "observed": _scalar(observed),
            "unexpected": r.result.get("unexpected_count"),
        }
        outcome.checks.append(check)
        if not r.success:
            text = (
                f"{cfg.type}({cfg.kwargs.get('column')}): observed {check['observed']}, "
                f"unexpected {check['unexpected']}{_raised(r)}"
            )
            (outcome.critical if severity == "critical" else outcome.warnings).append(text)
    outcome.checks.append(
        {
            "expectation": "no_duplicate_columns (sql)",
            "column": None,
            "severity": spec.validation.shift_severity,
            "success": not dups,
            "observed": len(dups),
            "unexpected": None,
        }
    )
    if dups:
        (outcome.critical if spec.validation.shift_severity == "critical" else outcome.warnings).append(
            f"near-duplicate columns: {dups}"
        )
    outcome.status = "fail" if outcome.critical else "warn" if outcome.warnings else "pass"
    return outcome


def _scalar(value: Any) -> int | float | str | None:
    """An observed value as JSON keeps it: PostgreSQL's AVG comes back as a Decimal, numpy's as numpy scalars."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (Decimal, numbers.Real)):
        return float(value)
    return None


def _raised(r: Any) -> str:
    """GX's own error, when a check failed because its query raised (not because the data broke it)."""
    info = getattr(r, "exception_info", None) or {}
    infos = [info] if "raised_exception" in info else list(info.values())
    messages = [
        str(i.get("exception_message")) for i in infos if isinstance(i, dict) and i.get("raised_exception")
    ]
    return f", raised: {messages[0][:300]}" if messages else ""


def _record(
    engine: Engine, spec: ModelSpec, outcome: ValidationOutcome, ref_id: str | None, actor: str
) -> None:
    version_id = outcome.version_id
    with engine.begin() as conn:
        conn.execute(data_validations.delete().where(data_validations.c.version_id == version_id))
        conn.execute(
            data_validations.insert().values(
                version_id=version_id,
                model=spec.name,
                status=outcome.status,
                critical=outcome.critical,
                warnings=outcome.warnings,
                checks=json.loads(json.dumps(outcome.checks, default=str)),
                results_path=outcome.results_path,
                docs_path=outcome.docs_path,
                evaluated_at=utcnow(),
            )
        )
        audit.append(
            conn,
            actor=actor,
            event_type="validate",
            model=spec.name,
            entity={"clean_version_id": version_id, "reference_version": ref_id},
            details={
                "status": outcome.status,
                "critical": outcome.critical[:10],
                "warnings": outcome.warnings[:10],
                "docs": outcome.docs_path,
            },
        )


def pending(engine: Engine, model: str) -> list[str]:
    with engine.connect() as conn:
        done = set(
            conn.execute(
                select(data_validations.c.version_id).where(data_validations.c.model == model)
            ).scalars()
        )
    return [v.version_id for v in datasets.list_versions(engine, model, "clean") if v.version_id not in done]


def validate_pending(engine: Engine, spec: ModelSpec, actor: str = "airflow") -> list[ValidationOutcome]:
    return [validate_version(engine, spec, v, actor) for v in pending(engine, spec.name)]


def failed_versions(engine: Engine, model: str) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                select(data_validations.c.version_id).where(
                    data_validations.c.model == model, data_validations.c.status == "fail"
                )
            ).scalars()
        )


def blocking_failures(outcomes: list[ValidationOutcome]) -> dict[str, list[str]]:
    """The versions whose critical checks failed, with those checks: any one stops the downstream DAGs."""
    return {o.version_id: o.critical for o in outcomes if o.status == "fail"}


def summary(outcomes: list[ValidationOutcome]) -> dict[str, dict[str, Any]]:
    """Per version: status, warnings (kept as evidence) and where the GX Data Docs are. Small JSON for XCom."""
    return {o.version_id: {"status": o.status, "warnings": o.warnings, "docs": o.docs_path} for o in outcomes}
