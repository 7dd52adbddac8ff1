"""The Great Expectations suite a spec implies, built from the schema, the cleaning rules and the previous validated
version's aggregates (``version_stats``). ``checks`` runs it and records the outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate.core import datasets
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import data_validations, utcnow
from airgate.data.clean_rules import EVENT_COLUMNS
from airgate.data.version_stats import ReferenceStats

# A version whose every row was quarantined: recorded, never a reference, and nothing downstream can use.
EMPTY = "empty"

MAX_RESPONSE_MS = 24 * 3600 * 1000


@dataclass
class ValidationOutcome:
    version_id: str
    status: str  # pass | warn | fail | empty (0 rows: nothing to label or train on)
    critical: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    results_path: str = ""
    docs_path: str | None = None
    note: str | None = None


def _previous_validated(engine: Engine, spec: ModelSpec, version_id: str) -> str | None:
    """The newest clean version before this one that passed validation, with at least
    ``validation.min_rows_for_shift`` rows: the reference for shift checks."""
    with engine.connect() as conn:
        ok = set(
            conn.execute(
                select(data_validations.c.version_id).where(
                    data_validations.c.model == spec.name,
                    data_validations.c.status.not_in(("fail", EMPTY)),
                )
            ).scalars()
        )
    older = [
        v.version_id
        for v in datasets.list_versions(engine, spec.name, "clean")
        if v.version_id != version_id and v.row_count >= spec.validation.min_rows_for_shift
    ]
    candidates = [v for v in older if v in ok]
    return candidates[-1] if candidates else None


def build_expectations(
    spec: ModelSpec, reference: ReferenceStats | None, catalog: pd.DataFrame | None
) -> list[Any]:
    import great_expectations.expectations as gxe
    from great_expectations.expectations.metadata_types import FailureSeverity

    # The clean rows carry the canonical names whatever the spec's roles call them in the landing data.
    rules = spec.cleaning
    critical = FailureSeverity.CRITICAL
    shift = FailureSeverity(spec.validation.shift_severity)
    ex: list[Any] = []
    for col in EVENT_COLUMNS:
        ex.append(gxe.ExpectColumnToExist(column=col, severity=critical))
    for col in [c for c in EVENT_COLUMNS if c not in ("correct", "answer")]:
        ex.append(gxe.ExpectColumnValuesToNotBeNull(column=col, severity=critical))
    ex.append(gxe.ExpectColumnValuesToBeUnique(column="event_id", severity=critical))
    ex.append(gxe.ExpectColumnValuesToBeInSet(column="correct", value_set=[0.0, 1.0], severity=critical))
    ex.append(
        gxe.ExpectColumnValuesToBeBetween(
            column="response_time_ms",
            min_value=rules.min_response_time_ms,
            max_value=MAX_RESPONSE_MS,
            severity=critical,
        )
    )
    ex.append(
        gxe.ExpectColumnValuesToBeBetween(
            column="ts",
            min_value=pd.Timestamp(rules.earliest_ts),
            max_value=pd.Timestamp(utcnow()) + pd.Timedelta(seconds=rules.max_future_skew_s),
            severity=critical,
        )
    )
    if catalog is not None:
        ex.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="item_id", value_set=sorted(catalog["item_id"]), severity=critical
            )
        )
        ex.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="skill_id", value_set=sorted(set(catalog["skill_id"])), severity=critical
            )
        )
    ex.append(
        gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(
            column="correct",
            min_value=1 - spec.validation.max_unlabeled_fraction,
            max_value=1.0,
            severity=shift,
        )
    )
    if reference is not None and reference.rows:
        ex.extend(_shift_expectations(spec, reference, shift))
    return ex


def _shift_expectations(spec: ModelSpec, ref: ReferenceStats, shift: Any) -> list[Any]:
    """Label mean, response-time median and skill mix against the reference version's aggregates."""
    import great_expectations.expectations as gxe

    v = spec.validation
    ex: list[Any] = []
    if ref.label_mean is not None:
        d = v.label_mean_shift
        ex.append(
            gxe.ExpectColumnMeanToBeBetween(
                column="correct", min_value=ref.label_mean - d, max_value=ref.label_mean + d, severity=shift
            )
        )
    if ref.response_time_median is not None:
        med, r = ref.response_time_median, v.response_time_median_shift
        ex.append(
            gxe.ExpectColumnMedianToBeBetween(
                column="response_time_ms", min_value=med * (1 - r), max_value=med * (1 + r), severity=shift
            )
        )
    if ref.skill_mix:
        ex.append(
            gxe.ExpectColumnKLDivergenceToBeLessThan(
                column="skill_id",
                partition_object={
                    "values": [k for k, _ in ref.skill_mix],
                    "weights": [w for _, w in ref.skill_mix],
                },
                threshold=v.skill_kl_divergence,
                severity=shift,
            )
        )
    return ex


def duplicate_columns(df: pd.DataFrame, threshold: float) -> list[str]:
    """Pairs of numeric columns so correlated that one is a copy of the other (the seeds' duplicate columns), in a
    frame; ``version_stats.duplicate_columns_in`` is the same check on a stored version, in SQL."""
    num = df.select_dtypes("number")
    num = num.loc[:, num.std(ddof=0) > 0]
    if num.shape[1] < 2:
        return []
    corr = num.corr().abs().to_numpy()
    cols = list(num.columns)
    return [
        f"{cols[i]}~{cols[j]} (|r|={corr[i, j]:.3f})"
        for i in range(len(cols))
        for j in range(i + 1, len(cols))
        if corr[i, j] >= threshold
    ]
