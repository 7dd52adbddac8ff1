"""Great Expectations validation of every clean version, with a suite built from the spec (not by hand).

Critical expectations (schema, keys, types and ranges from the cleaning rules, the item catalog) stop the
downstream DAGs: a version that fails them is never labeled or trained on. Distribution shift against the previous
version (label mean, response-time median, skill mix as KL divergence), the share of unlabeled rows and
near-duplicate columns are warnings by default (``validation.shift_severity``): they pass, and are kept as evidence.
Results (JSON, ``validations/<model>/<version>/``) and GX Data Docs (HTML, in the model's GX project ``gx/<model>/``)
are in storage (``airgate.core.storage``, ``AIRGATE_STORAGE_URL``), so the approval page, served from another host, can
link to them. GX's file context wants a local folder: each validation brings the model's project down to scratch,
runs there, and puts back what changed. The clean DAG validates one model at a time, so nothing races for it.
GX has no correlation expectation, so the near-duplicate-column check is computed with pandas and reported in the
same result.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate.core import audit, datasets, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import data_validations, utcnow
from airgate.data.expectations import (  # noqa: F401 - re-exported: callers import them from here
    MAX_RESPONSE_MS,
    ValidationOutcome,
    _frame,
    _previous_validated,
    build_expectations,
    duplicate_columns,
)

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
    os.environ.setdefault("TQDM_DISABLE", "1")
    import great_expectations as gx

    from airgate.data.clean import load_catalog

    df = _frame(engine, version_id)
    ref_id = _previous_validated(engine, spec, version_id)
    reference = _frame(engine, ref_id) if ref_id else None
    with storage.scratch("gx-") as tmp:
        project = tmp / spec.name
        # The project as the last validation left it; none yet before the model's first validation.
        before = storage.download_tree(gx_project(spec.name), project, missing_ok=True)
        result, docs_path = _run_gx(gx, spec, version_id, df, reference, load_catalog(spec), ref_id, project)
        storage.upload_tree(project, gx_project(spec.name), unchanged=before)
    outcome = _outcome(spec, version_id, df, result)
    results_path = storage.write_text_atomic(
        results_file(spec.name, version_id),
        json.dumps(
            {
                "version_id": version_id,
                "reference_version": ref_id,
                "status": outcome.status,
                "critical": outcome.critical,
                "warnings": outcome.warnings,
                "checks": outcome.checks,
                "gx": result.describe_dict() if hasattr(result, "describe_dict") else None,
            },
            indent=2,
            default=str,
        ),
    )
    outcome.results_path = storage.as_string(results_path)
    outcome.docs_path = docs_path
    _record(engine, spec, outcome, ref_id, actor)
    log.info(
        "validated %s: %s (%d critical, %d warnings)",
        version_id,
        outcome.status,
        len(outcome.critical),
        len(outcome.warnings),
    )
    return outcome


def _run_gx(
    gx: Any,
    spec: ModelSpec,
    version_id: str,
    df: pd.DataFrame,
    reference: pd.DataFrame | None,
    catalog: pd.DataFrame | None,
    ref_id: str | None,
    project: Path,
) -> tuple[Any, str | None]:
    """Run the spec's suite with GX's file context in the local ``project``; (the validation result, the Data
    Docs index as it will be in storage)."""
    ctx = gx.get_context(mode="file", project_root_dir=str(project))
    ds = ctx.data_sources.add_or_update_pandas(name="airgate")
    asset_name = f"{spec.name}_clean"
    asset = next((a for a in ds.assets if a.name == asset_name), None) or ds.add_dataframe_asset(
        name=asset_name
    )
    bd = next(
        (b for b in asset.batch_definitions if b.name == "whole"), None
    ) or asset.add_batch_definition_whole_dataframe("whole")
    suite = ctx.suites.add_or_update(
        gx.ExpectationSuite(
            name=f"{spec.name}.{version_id}",
            expectations=build_expectations(spec, df, reference, catalog),
            meta={"spec_hash": spec.spec_hash, "reference_version": ref_id},
        )
    )
    vd = ctx.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"vd.{version_id}", data=bd, suite=suite)
    )
    cp = ctx.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"cp.{version_id}",
            validation_definitions=[vd],
            result_format="SUMMARY",
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
        )
    )
    run = cp.run(batch_parameters={"dataframe": df})
    result = next(iter(run.run_results.values()))
    docs = list(ctx.get_docs_sites_urls())
    return result, _docs_location(spec.name, project, docs[0]["site_url"]) if docs else None


def _outcome(spec: ModelSpec, version_id: str, df: pd.DataFrame, result: Any) -> ValidationOutcome:
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
            "observed": observed if isinstance(observed, (int, float, str)) else None,
            "unexpected": r.result.get("unexpected_count"),
        }
        outcome.checks.append(check)
        if not r.success:
            text = (
                f"{cfg.type}({cfg.kwargs.get('column')}): observed {check['observed']}, "
                f"unexpected {check['unexpected']}"
            )
            (outcome.critical if severity == "critical" else outcome.warnings).append(text)
    dups = duplicate_columns(df, spec.validation.duplicate_column_correlation)
    outcome.checks.append(
        {
            "expectation": "no_duplicate_columns (pandas)",
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
