"""The row rules of cleaning, vectorised over one chunk of raw rows: each row gets the first rule it breaks.

Everything here looks at one row at a time (its own values, the spec, the item catalog, the database's limits), so
a chunk can be judged without the rest of the batch. The batch-level rules (duplicate keys, too few events per
entity) need the database and live in ``airgate.data.clean``.

Raw rows are read through the spec's roles (``schema.key/entity/time/label`` name the landing columns); what comes
out has the canonical clean_events names (event_id, student_id, ts, correct), whatever the source called them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pajson

from airgate.core.spec import ModelSpec

# Markers collect sets in a raw row's content: the row did not have the header's shape; a value could not be
# decoded as UTF-8 (a Parquet binary column; the marker names the column(s)).
from airgate.data.readers import MALFORMED, UNDECODABLE

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
REQUIRED = ["event_id", "student_id", "item_id", "skill_id", "ts", "response_time_ms"]
MAX_RESPONSE_MS = 24 * 3600 * 1000
# clean_events' String(128) columns: PostgreSQL refuses longer values (SQLite would take them), so both refuse.
MAX_TEXT = {"event_id": 128, "student_id": 128, "item_id": 128, "skill_id": 128}
# A value that ends in an offset after a time of day: "Z", "+02:00", "-0500", "+05". Anything else is naive.
_OFFSET = r"(?:\d{2}:\d{2}(?::\d{2})?|T\d{2,6})(?:[.,]\d+)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
# datetime64[ns] spans 1677-09-21 .. 2262-04-11: a valid timestamp outside it is a range problem, not a type one.
_NS_YEARS = (1678, 2261)
_STR = pd.StringDtype("pyarrow")


@dataclass(frozen=True)
class Roles:
    """The landing column behind each canonical clean_events column (key, entity, time, label renamed by the spec;
    the others keep their names)."""

    source_of: dict[str, str]

    @classmethod
    def of(cls, spec: ModelSpec) -> Roles:
        s = spec.data_schema
        renamed = {"event_id": s.key, "student_id": s.entity, "ts": s.time, "correct": s.label}
        return cls({c: renamed.get(c, c) for c in EVENT_COLUMNS})

    def name(self, canonical: str) -> str:
        return self.source_of[canonical]


@dataclass(frozen=True)
class Catalog:
    """The item catalog, prepared once per batch: each item's skill, and the skills it knows."""

    skill_of: dict[str, str]
    skills: frozenset[str]

    @classmethod
    def of(cls, frame: pd.DataFrame | None) -> Catalog | None:
        if frame is None:
            return None
        skill_of = dict(zip(frame["item_id"].astype(str), frame["skill_id"].astype(str), strict=True))
        return cls(skill_of, frozenset(skill_of.values()))


@dataclass(frozen=True)
class Verdict:
    """One chunk judged by the row rules: canonical values (index = row_num), and the first reason of each
    rejected row (NA where the row passed)."""

    values: pd.DataFrame  # EVENT_COLUMNS, typed: ts UTC, response_time_ms int-valued float, correct float
    reason: pd.Series
    detail: pd.Series

    @property
    def ok(self) -> pd.Series:
        return self.reason.isna()


class Reasons:
    """The first rule each row breaks (code and detail): a row flagged once keeps that reason, so it is stable."""

    def __init__(self, index: pd.Index) -> None:
        self.reason = pd.Series(pd.NA, index=index, dtype="object")
        self.detail = pd.Series(pd.NA, index=index, dtype="object")

    def flag(self, mask: pd.Series, code: str, text: str | pd.Series) -> None:
        # Arrow-backed comparisons give nullable booleans: a null (a value that was not there) breaks no rule.
        m = mask.to_numpy(dtype=bool, na_value=False) & self.reason.isna().to_numpy()
        if not m.any():
            return
        self.reason[m] = code
        self.detail[m] = text[m] if isinstance(text, pd.Series) else text

    @property
    def ok(self) -> pd.Series:
        return self.reason.isna()


def parse_contents(texts: list[str], index: pd.Index, roles: Roles) -> pd.DataFrame:
    """Raw contents (JSON text, one object per row) as Arrow-backed string columns under canonical names, ""
    where absent (Arrow's string kernels are what makes the rules vectorised: object strings loop in Python).

    A content that is not a JSON object of strings takes the slow path, and one that is not an object at all
    becomes a malformed row (its own reason), not a failed batch.
    """
    wanted = [roles.name(c) for c in EVENT_COLUMNS] + [MALFORMED, UNDECODABLE]
    raw = _read_fast(texts, wanted)
    if raw is None:
        raw = _read_slow(texts, wanted)
    raw.index = index
    out = pd.DataFrame({c: raw[roles.name(c)] for c in EVENT_COLUMNS}, index=index)
    for marker in (MALFORMED, UNDECODABLE):
        out[marker] = raw[marker]
    return out.fillna("")


def _read_fast(texts: list[str], wanted: list[str]) -> pd.DataFrame | None:
    """All the chunk's contents parsed by Arrow in one go, or None when one of them is not a flat object of
    strings on one line."""
    schema = pa.schema([(c, pa.string()) for c in dict.fromkeys(wanted)])
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pajson.read_json(io.BytesIO("\n".join(texts).encode()), parse_options=options)
    except (pa.ArrowInvalid, UnicodeEncodeError):
        return None
    if table.num_rows != len(texts):
        return None
    return table.to_pandas(types_mapper={pa.string(): _STR}.get)


def _read_slow(texts: list[str], wanted: list[str]) -> pd.DataFrame:
    rows = [_loads_or_none(t) for t in texts]
    bad = [not isinstance(r, dict) for r in rows]
    recs = [
        {k: ("" if r.get(k) is None else str(r[k])) for k in wanted} if not b else {}
        for r, b in zip(rows, bad, strict=True)
    ]
    raw = pd.DataFrame.from_records(recs, columns=list(dict.fromkeys(wanted))).fillna("").astype(_STR)
    raw.loc[bad, MALFORMED] = "the raw content is not a JSON object"
    return raw


def _loads_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _shape_rules(df: pd.DataFrame, r: Reasons, roles: Roles) -> None:
    """Rows that do not match the header, values collect could not decode, NUL bytes (PostgreSQL text cannot
    hold one), empty required values (stripped in place) and values longer than their column (PostgreSQL refuses
    them, SQLite would not: checked here, both databases give the same result)."""
    r.flag(df[MALFORMED] != "", "malformed_row", "row does not match the header: " + df[MALFORMED])
    r.flag(df[UNDECODABLE] != "", "bad_encoding", df[UNDECODABLE] + " is not valid UTF-8")
    for col in EVENT_COLUMNS:
        r.flag(
            df[col].str.contains("\x00", regex=False), "nul_byte", f"{roles.name(col)} contains a NUL byte"
        )
    for col in REQUIRED:
        vals = df[col].str.strip()
        r.flag(vals == "", "missing_value", f"{roles.name(col)} is empty")
        df[col] = vals
    for col, limit in MAX_TEXT.items():
        n = df[col].str.len()
        r.flag(
            n > limit, "too_long", f"{roles.name(col)} is longer than {limit} characters: " + n.astype(str)
        )


def parse_ts(values: pd.Series, zone: str) -> tuple[pd.Series, pd.Series]:
    """(UTC timestamps, year of valid ISO-8601 values beyond datetime64's range) for string values.

    A value with an offset keeps its own; a naive one is read in ``zone`` (the spec's naive_timezone), value by
    value. A wall time a DST change makes ambiguous is its first occurrence, one it skips moves forward to the
    change. NaT where the value does not parse.
    """
    aware = values.str.contains(_OFFSET, regex=True)
    ts = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if aware.any():
        ts[aware] = pd.to_datetime(values[aware], utc=True, errors="coerce", format="ISO8601")
    naive = ~aware
    if naive.any():
        wall = pd.to_datetime(values[naive], utc=True, errors="coerce", format="ISO8601").dt.tz_localize(None)
        local = wall.dt.tz_localize(
            zone, ambiguous=np.ones(len(wall), dtype=bool), nonexistent="shift_forward"
        )
        ts[naive] = local.dt.tz_convert("UTC")
    failed = ts.isna() & (values != "")
    years = values[failed].map(_iso_year).reindex(values.index)
    return ts, years


def _iso_year(value: str) -> float:
    try:
        return float(datetime.fromisoformat(value).year)
    except ValueError:
        return float("nan")


def _number(values: pd.Series) -> pd.Series:
    """Numbers as float64, NaN where a value is empty or not a number."""
    n = pd.to_numeric(values.astype(object).where(values != "", None), errors="coerce")
    return pd.Series(n.to_numpy(dtype="float64", na_value=np.nan), index=values.index)


def _typed_values(df: pd.DataFrame, r: Reasons, spec: ModelSpec, roles: Roles) -> pd.DataFrame:
    """ts, response_time_ms and the label parsed; what does not parse is flagged (a valid timestamp beyond
    datetime64's years is out of range, never a type error, and a value that is no timestamp is never 'future')."""
    rules = spec.cleaning
    t = roles.name("ts")
    ts, years = parse_ts(df["ts"], spec.data_schema.naive_timezone)
    r.flag(years > _NS_YEARS[1], "ts_in_future", f"{t} is later than the batch's arrival")
    r.flag(years < _NS_YEARS[0], "ts_out_of_range", f"{t} before {rules.earliest_ts}")
    r.flag(ts.isna(), "bad_type", f"{t} is not an ISO-8601 timestamp")
    rt = _number(df["response_time_ms"])
    r.flag(rt.isna() | (rt != rt.round()), "bad_type", "response_time_ms is not a whole number")
    r.flag((rt < 0) | (rt > MAX_RESPONSE_MS), "out_of_range", "response_time_ms outside [0, 24h]")
    label_raw = df["correct"].str.strip()
    label = _number(label_raw)  # "" is ungraded: NaN
    lab = roles.name("correct")
    r.flag((label_raw != "") & ~label.isin([0, 1]), "bad_label", f"{lab} must be 0, 1 or empty")
    out = df[EVENT_COLUMNS].copy()
    out["ts"], out["response_time_ms"], out["correct"] = ts, rt, label
    return out


def _range_rules(v: pd.DataFrame, r: Reasons, spec: ModelSpec, roles: Roles, as_of: pd.Timestamp) -> None:
    rules = spec.cleaning
    t = roles.name("ts")
    cutoff = as_of + timedelta(seconds=rules.max_future_skew_s)
    r.flag(v["ts"] > cutoff, "ts_in_future", f"{t} is later than the batch's arrival")
    r.flag(v["ts"] < pd.Timestamp(rules.earliest_ts), "ts_out_of_range", f"{t} before {rules.earliest_ts}")
    r.flag(
        v["response_time_ms"] < rules.min_response_time_ms,
        "rapid_guess",
        f"response_time_ms under {rules.min_response_time_ms}",
    )


def _catalog_rules(v: pd.DataFrame, r: Reasons, catalog: Catalog | None) -> None:
    """Items and skills the item catalog does not know, or that it pairs differently."""
    if catalog is None:
        return
    r.flag(~v["item_id"].isin(catalog.skill_of.keys()), "unknown_item", "item_id is not in the item catalog")
    r.flag(~v["skill_id"].isin(catalog.skills), "unknown_skill", "skill_id is not in the item catalog")
    r.flag(
        v["item_id"].map(catalog.skill_of) != v["skill_id"],
        "skill_mismatch",
        "skill_id differs from the catalog's skill for this item",
    )


def row_rules(
    df: pd.DataFrame, spec: ModelSpec, roles: Roles, as_of: pd.Timestamp, catalog: Catalog | None
) -> Verdict:
    """Judge one chunk (``parse_contents``' frame) by every rule that needs only the row itself, in a fixed
    order, so the reason is stable."""
    r = Reasons(df.index)
    _shape_rules(df, r, roles)
    values = _typed_values(df, r, spec, roles)
    _range_rules(values, r, spec, roles, as_of)
    _catalog_rules(values, r, catalog)
    return Verdict(values, r.reason, r.detail)
