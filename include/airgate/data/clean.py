"""Cleaning: a raw version becomes a clean version plus quarantined rows, each with a reason code.

The invariant holds for every batch and is checked before anything is written:
rows in = rows accepted + rows quarantined. Rules come from the spec. The cut-off for "in the future" is the time
the raw batch was ingested, not the wall clock, so re-cleaning a raw version always gives the same clean version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate.core import audit, datasets, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import as_utc, bulk_insert, clean_events, dataset_versions, quarantine, raw_rows
from airgate.data.collect import MALFORMED

log = logging.getLogger(__name__)

EVENT_COLUMNS = [
    "event_id",
    "student_id",
    "item_id",
    "skill_id",
    "ts",
    "response_time_ms",
    "answer",
    "correct",
]
MAX_RESPONSE_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class CleanOutcome:
    raw_version_id: str
    clean_version_id: str
    rows_in: int
    accepted: int
    quarantined: int
    reasons: dict[str, int]


@dataclass
class CleanResult:
    model: str
    versions: list[CleanOutcome] = field(default_factory=list)

    @property
    def clean_version_ids(self) -> list[str]:
        return [v.clean_version_id for v in self.versions]


class InvariantBroken(RuntimeError):
    pass


def _iso_year(value: str) -> float | None:
    try:
        return float(datetime.fromisoformat(value.replace("Z", "+00:00")).year)
    except ValueError:
        return None


class _Reasons:
    """The first rule each row breaks (code and detail): a row flagged once keeps that reason, so it is stable."""

    def __init__(self, index: pd.Index) -> None:
        self.reason = pd.Series(pd.NA, index=index, dtype="object")
        self.detail = pd.Series(pd.NA, index=index, dtype="object")

    def flag(self, mask: pd.Series, code: str, text: str | pd.Series) -> None:
        m = mask & self.reason.isna()
        self.reason[m] = code
        self.detail[m] = text[m] if isinstance(text, pd.Series) else text

    @property
    def ok(self) -> pd.Series:
        return self.reason.isna()


def _shape_rules(df: pd.DataFrame, r: _Reasons) -> None:
    """Rows that do not match the header, and empty required values (stripped in place)."""
    if MALFORMED in df.columns:
        r.flag(
            df[MALFORMED].notna() & (df[MALFORMED].astype(str) != ""),
            "malformed_row",
            "row does not match the header: " + df[MALFORMED].fillna("").astype(str),
        )
    for col in ["event_id", "student_id", "item_id", "skill_id", "ts", "response_time_ms"]:
        vals = df[col].fillna("").astype(str).str.strip()
        r.flag(vals == "", "missing_value", f"{col} is empty")
        df[col] = vals


def _typed_values(df: pd.DataFrame, r: _Reasons, rules: Any) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(ts, response_time_ms, label) parsed; what does not parse is flagged."""
    ts = pd.to_datetime(df["ts"], utc=True, errors="coerce", format="ISO8601")
    # Valid ISO-8601 outside pandas' range (e.g. year 2999) is a range problem, not a type problem.
    beyond = ts.isna() & df["ts"].map(_iso_year).notna()
    years = df["ts"].map(_iso_year)
    r.flag(beyond & (years >= 2000), "ts_in_future", "ts is later than the batch's arrival")
    r.flag(beyond, "ts_out_of_range", f"ts before {rules.earliest_ts}")
    r.flag(ts.isna(), "bad_type", "ts is not an ISO-8601 timestamp")
    rt = pd.to_numeric(df["response_time_ms"], errors="coerce")
    r.flag(rt.isna() | (rt != rt.round()), "bad_type", "response_time_ms is not a whole number")
    r.flag((rt < 0) | (rt > MAX_RESPONSE_MS), "out_of_range", "response_time_ms outside [0, 24h]")
    label_raw = df["correct"].fillna("").astype(str).str.strip()
    label = pd.to_numeric(label_raw.where(label_raw != ""), errors="coerce")  # "" is ungraded: NaN
    r.flag((label_raw != "") & ~label.isin([0, 1]), "bad_label", "correct must be 0, 1 or empty")
    return ts, rt, label


def _range_rules(ts: pd.Series, rt: pd.Series, r: _Reasons, rules: Any, as_of: pd.Timestamp) -> None:
    r.flag(
        ts > as_of + timedelta(seconds=rules.max_future_skew_s),
        "ts_in_future",
        "ts is later than the batch's arrival",
    )
    r.flag(ts < pd.Timestamp(rules.earliest_ts), "ts_out_of_range", f"ts before {rules.earliest_ts}")
    r.flag(
        rt < rules.min_response_time_ms, "rapid_guess", f"response_time_ms under {rules.min_response_time_ms}"
    )


def _catalog_rules(df: pd.DataFrame, r: _Reasons, catalog: pd.DataFrame | None) -> None:
    """Items and skills the item catalog does not know, or that it pairs differently."""
    if catalog is None:
        return
    skill_of = dict(zip(catalog["item_id"].astype(str), catalog["skill_id"].astype(str), strict=True))
    known_skill = df["skill_id"].isin(set(skill_of.values()))
    r.flag(~df["item_id"].isin(skill_of.keys()), "unknown_item", "item_id is not in the item catalog")
    r.flag(~known_skill, "unknown_skill", "skill_id is not in the item catalog")
    r.flag(
        df["item_id"].map(skill_of) != df["skill_id"],
        "skill_mismatch",
        "skill_id differs from the catalog's skill for this item",
    )


def _event_rules(df: pd.DataFrame, r: _Reasons, rules: Any, known_event_ids: set[str]) -> None:
    """Duplicate events (earlier versions, then within the batch), then students left with too few clean events."""
    r.flag(
        df["event_id"].isin(known_event_ids), "duplicate_event_id", "event_id already in an earlier version"
    )
    dup = df["event_id"].duplicated(keep="first") & r.ok
    r.flag(dup, "duplicate_event_id", "event_id repeated within the batch")
    ok = r.ok
    counts = df.loc[ok, "student_id"].map(df.loc[ok, "student_id"].value_counts())
    few = pd.Series(False, index=df.index)
    few[counts.index] = counts < rules.min_events_per_student
    r.flag(few, "too_few_events", f"student has fewer than {rules.min_events_per_student} clean events")


def apply_rules(
    raw: pd.DataFrame,
    spec: ModelSpec,
    as_of: pd.Timestamp,
    known_event_ids: set[str],
    catalog: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split raw string rows into (accepted typed rows, rejected rows with reason and detail).

    Each row gets the first rule it breaks, in a fixed order, so the reason is stable.
    """
    rules = spec.cleaning
    df = raw.copy()
    r = _Reasons(df.index)
    _shape_rules(df, r)
    ts, rt, label = _typed_values(df, r, rules)
    _range_rules(ts, rt, r, rules, as_of)
    _catalog_rules(df, r, catalog)
    _event_rules(df, r, rules, known_event_ids)
    ok = r.ok
    accepted = pd.DataFrame(
        {
            "event_id": df.loc[ok, "event_id"],
            "student_id": df.loc[ok, "student_id"],
            "item_id": df.loc[ok, "item_id"],
            "skill_id": df.loc[ok, "skill_id"],
            "ts": ts[ok],
            "response_time_ms": rt[ok].astype("int64"),
            "answer": df.loc[ok, "answer"].fillna("").astype(str),
            "correct": label[ok].astype("Int64"),
        }
    )
    rejected = pd.DataFrame({"reason": r.reason[~ok], "detail": r.detail[~ok]})
    return accepted, rejected


def load_catalog(spec: ModelSpec) -> pd.DataFrame | None:
    """The item catalog (item_id, skill_id) named by the spec, if any, from storage (``storage.location``:
    relative paths are under ``AIRGATE_STORAGE_URL``, by default ``$AIRGATE_HOME``). A named catalog that is not
    there is an error: cleaning never runs without the check the spec asks for."""
    if not spec.cleaning.item_catalog:
        return None
    what = (
        "the item catalog, spec field cleaning.item_catalog: publish the catalog there, or remove the field to "
        "skip the check"
    )
    with storage.open_read(spec.cleaning.item_catalog, what=what) as fh:
        return pd.read_csv(fh, dtype=str)


def pending_raw_versions(engine: Engine, model: str) -> list[str]:
    """Raw versions that no clean version derives from yet, oldest first."""
    raws = datasets.list_versions(engine, model, "raw")
    cleaned = {p for v in datasets.list_versions(engine, model, "clean") for p in v.parents}
    return [v.version_id for v in raws if v.version_id not in cleaned]


def clean_version(
    engine: Engine, spec: ModelSpec, raw_version_id: str, actor: str = "airflow"
) -> CleanOutcome:
    with engine.connect() as conn:
        meta = conn.execute(
            select(dataset_versions).where(dataset_versions.c.version_id == raw_version_id)
        ).one()
        raw_list = conn.execute(
            select(raw_rows.c.row_num, raw_rows.c.content)
            .where(raw_rows.c.version_id == raw_version_id)
            .order_by(raw_rows.c.row_num)
        ).all()
        known = set(
            conn.execute(select(clean_events.c.event_id).where(clean_events.c.model == spec.name)).scalars()
        )
    raw = pd.DataFrame([dict(c) for _, c in raw_list], index=[n for n, _ in raw_list])
    for col in EVENT_COLUMNS:
        if col not in raw.columns:
            raw[col] = ""
    as_of = pd.Timestamp(as_utc(meta.created_at))
    accepted, rejected = apply_rules(raw, spec, as_of, known, load_catalog(spec))
    if len(accepted) + len(rejected) != len(raw):
        raise InvariantBroken(
            f"{raw_version_id}: {len(raw)} in != {len(accepted)} accepted + {len(rejected)} quarantined"
        )

    accepted = accepted.sort_values("event_id")
    rows_for_hash = accepted.astype({"ts": "string", "correct": "object"}).itertuples(index=False, name=None)
    digest = datasets.content_hash(
        "clean",
        spec.name,
        rows_for_hash,
        extra={
            "raw": raw_version_id,
            "rules": spec.cleaning.model_dump(),
            "rejected": sorted(zip(rejected.index.tolist(), rejected["reason"].tolist(), strict=True)),
        },
    )
    reasons = {str(k): int(v) for k, v in rejected["reason"].value_counts().items()}
    summary: dict[str, Any] = {
        "rows_in": len(raw),
        "accepted": len(accepted),
        "quarantined": len(rejected),
        "reasons": reasons,
        "rows_added": len(accepted),
    }
    with engine.begin() as conn:
        vid = datasets.insert_version(
            conn,
            model=spec.name,
            kind="clean",
            digest=digest,
            parents=[raw_version_id],
            row_count=len(accepted),
            schema={"columns": EVENT_COLUMNS},
            summary=summary,
            batch_id=meta.batch_id,
        )
        recs = accepted.assign(version_id=vid, model=spec.name)
        rows = recs.astype(object).where(recs.notna(), None).to_dict("records")
        bulk_insert(conn, clean_events, rows)
        bulk_insert(
            conn,
            quarantine,
            [
                {
                    "version_id": vid,
                    "raw_version_id": raw_version_id,
                    "row_num": int(i),
                    "reason": r.reason,
                    "detail": str(r.detail),
                    "content": raw.loc[i, :].fillna("").astype(str).to_dict(),
                }
                for i, r in rejected.iterrows()
            ],
        )
        audit.append(
            conn,
            actor=actor,
            event_type="clean",
            model=spec.name,
            entity={"raw_version_id": raw_version_id, "clean_version_id": vid, "batch_id": meta.batch_id},
            details=summary,
        )
    log.info(
        "cleaned %s -> %s: %d accepted, %d quarantined %s",
        raw_version_id,
        vid,
        len(accepted),
        len(rejected),
        reasons,
    )
    return CleanOutcome(raw_version_id, vid, len(raw), len(accepted), len(rejected), reasons)


def clean_pending(engine: Engine, spec: ModelSpec, actor: str = "airflow") -> CleanResult:
    result = CleanResult(spec.name)
    for rv in pending_raw_versions(engine, spec.name):
        result.versions.append(clean_version(engine, spec, rv, actor))
    return result
