"""The Great Expectations suite a spec implies, built from the schema, the cleaning rules and the previous validated
version. ``checks`` runs it and records the outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate.core import datasets
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import clean_events, data_validations, utcnow
from airgate.data.clean import EVENT_COLUMNS

MAX_RESPONSE_MS = 24 * 3600 * 1000


@dataclass
class ValidationOutcome:
    version_id: str
    status: str  # pass | warn | fail
    critical: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    results_path: str = ""
    docs_path: str | None = None


def _frame(engine: Engine, version_id: str) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                clean_events.c.event_id,
                clean_events.c.student_id,
                clean_events.c.item_id,
                clean_events.c.skill_id,
                clean_events.c.ts,
                clean_events.c.response_time_ms,
                clean_events.c.answer,
                clean_events.c.correct,
            ).where(clean_events.c.version_id == version_id)
        ).all()
    df = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df["correct"] = df["correct"].astype("float64")
    return df


def _previous_validated(engine: Engine, spec: ModelSpec, version_id: str) -> str | None:
    """The newest clean version before this one that passed validation: the reference for shift checks."""
    with engine.connect() as conn:
        ok = set(
            conn.execute(
                select(data_validations.c.version_id).where(
                    data_validations.c.model == spec.name, data_validations.c.status != "fail"
                )
            ).scalars()
        )
    older = [
        v.version_id for v in datasets.list_versions(engine, spec.name, "clean") if v.version_id != version_id
    ]
    candidates = [v for v in older if v in ok]
    return candidates[-1] if candidates else None


def build_expectations(
    spec: ModelSpec, df: pd.DataFrame, reference: pd.DataFrame | None, catalog: pd.DataFrame | None
) -> list[Any]:
    import great_expectations.expectations as gxe
    from great_expectations.expectations.metadata_types import FailureSeverity

    s = spec.data_schema
    rules = spec.cleaning
    critical = FailureSeverity.CRITICAL
    shift = FailureSeverity(spec.validation.shift_severity)
    ex: list[Any] = []
    for col in s.columns:
        ex.append(gxe.ExpectColumnToExist(column=col, severity=critical))
    for col in [c for c in s.columns if c not in (s.label, "answer")]:
        ex.append(gxe.ExpectColumnValuesToNotBeNull(column=col, severity=critical))
    ex.append(gxe.ExpectColumnValuesToBeUnique(column=s.key, severity=critical))
    ex.append(gxe.ExpectColumnValuesToBeInSet(column=s.label, value_set=[0.0, 1.0], severity=critical))
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
            column=s.time,
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
            column=s.label,
            min_value=1 - spec.validation.max_unlabeled_fraction,
            max_value=1.0,
            severity=shift,
        )
    )
    if reference is not None and len(reference):
        ref_mean = float(reference[s.label].mean())
        d = spec.validation.label_mean_shift
        ex.append(
            gxe.ExpectColumnMeanToBeBetween(
                column=s.label, min_value=ref_mean - d, max_value=ref_mean + d, severity=shift
            )
        )
        med = float(reference["response_time_ms"].median())
        r = spec.validation.response_time_median_shift
        ex.append(
            gxe.ExpectColumnMedianToBeBetween(
                column="response_time_ms", min_value=med * (1 - r), max_value=med * (1 + r), severity=shift
            )
        )
        mix = reference["skill_id"].value_counts(normalize=True).sort_index()
        ex.append(
            gxe.ExpectColumnKLDivergenceToBeLessThan(
                column="skill_id",
                partition_object={"values": mix.index.tolist(), "weights": mix.tolist()},
                threshold=spec.validation.skill_kl_divergence,
                severity=shift,
            )
        )
    return ex


def duplicate_columns(df: pd.DataFrame, threshold: float) -> list[str]:
    """Pairs of numeric columns so correlated that one is a copy of the other (the seeds' duplicate columns)."""
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
