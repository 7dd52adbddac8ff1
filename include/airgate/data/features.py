"""Point-in-time knowledge-tracing features: the one code path for training and for scoring.

A row's features use only events strictly earlier in time than the row itself, so nothing about its own answer,
or any later answer, can leak in. Rows that share a timestamp do not see each other. Ungraded earlier events count
as practice (attempts) but add nothing to the correctness tallies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate.core.warehouse import bulk_read_tuples, clean_events

FEATURES = [
    "stu_attempts",
    "stu_rate",
    "stu_skill_attempts",
    "stu_skill_rate",
    "item_attempts",
    "item_rate",
    "skill_rate",
    "stu_last_correct",
    "stu_skill_last_correct",
    "log_gap_s",
    "stu_recent_rate",
    "stu_resid",
    "stu_skill_resid",
]
PRIOR = 2.0  # pseudo-counts for smoothed rates: a new student or item starts near the global rate
RECENT = 5  # answers in the "recent accuracy" window


def _prior_counts(df: pd.DataFrame, keys: list[str], graded: pd.Series, correct: pd.Series) -> pd.DataFrame:
    """For each row: attempts, graded and correct counts among earlier rows of the same key, excluding ties."""
    g = df.groupby(keys, sort=False)
    out = pd.DataFrame(index=df.index)
    out["n"] = g.cumcount()
    out["g"] = graded.groupby([df[k] for k in keys], sort=False).cumsum() - graded
    out["c"] = correct.groupby([df[k] for k in keys], sort=False).cumsum() - correct
    # Rows that share (key, ts) must all see the state before the first of them.
    tie = df.groupby(keys + ["ts"], sort=False)
    for col in ("n", "g", "c"):
        out[col] = out[col].groupby([tie.ngroup()]).transform("first")
    return out


def _encoded(events: pd.DataFrame) -> pd.DataFrame:
    """The events in time order, ids as integer codes and ts as int64 nanoseconds."""
    df = events[["event_id", "student_id", "item_id", "skill_id", "ts", "correct"]].copy()
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df = df.sort_values(["ts", "event_id"], kind="mergesort").reset_index(drop=True)
    # Every groupby below keys on these: as integer codes they are hashed once here, not once per groupby (the
    # string keys cost four fifths of the time). Codes keep equality, which is all a groupby key needs.
    for col in ("student_id", "item_id", "skill_id"):
        df[col] = pd.factorize(df[col])[0]
    return df


def _rates(df: pd.DataFrame, out: pd.DataFrame, graded: pd.Series, correct: pd.Series) -> pd.Series:
    """Attempts and smoothed accuracy per student, student-skill, item and skill; returns the global prior."""
    # The smoothing prior is itself point in time: the global accuracy among strictly earlier graded answers.
    df["_all"] = 0
    glob = _prior_counts(df, ["_all"], graded, correct)
    global_rate = (glob["c"] + 1.0) / (glob["g"] + 2.0)

    stu = _prior_counts(df, ["student_id"], graded, correct)
    sk = _prior_counts(df, ["student_id", "skill_id"], graded, correct)
    item = _prior_counts(df, ["item_id"], graded, correct)
    skill = _prior_counts(df, ["skill_id"], graded, correct)

    def rate(c: pd.DataFrame) -> pd.Series:
        return (c["c"] + PRIOR * global_rate) / (c["g"] + PRIOR)

    out["stu_attempts"] = stu["n"].astype("float64")
    out["stu_rate"] = rate(stu)
    out["stu_skill_attempts"] = sk["n"].astype("float64")
    out["stu_skill_rate"] = rate(sk)
    out["item_attempts"] = np.log1p(item["n"].astype("float64"))
    out["item_rate"] = rate(item)
    out["skill_rate"] = rate(skill)
    return global_rate


def _ability(df: pd.DataFrame, out: pd.DataFrame, graded: pd.Series, correct: pd.Series) -> None:
    """Ability, IRT style: how much better than the item's (point-in-time) difficulty the student did so far."""
    resid = (correct - out["item_rate"]).where(graded == 1, 0.0)
    for name, keys in (("stu_resid", ["student_id"]), ("stu_skill_resid", ["student_id", "skill_id"])):
        grp = [df[k] for k in keys]
        prior_sum = resid.groupby(grp, sort=False).cumsum() - resid
        prior_n = graded.groupby(grp, sort=False).cumsum() - graded
        same_ts = df.groupby(keys + ["ts"], sort=False).ngroup()
        val = prior_sum / (prior_n + PRIOR)
        out[name] = val.groupby(same_ts).transform("first")


def _last_answers(df: pd.DataFrame, out: pd.DataFrame, ts: pd.Series) -> None:
    """Last graded answer by the same student (and on the same skill), strictly earlier in time; the gap since
    the student's previous answer."""
    last = df["correct"].astype("float64")
    for name, keys in (
        ("stu_last_correct", ["student_id"]),
        ("stu_skill_last_correct", ["student_id", "skill_id"]),
    ):
        grp = [df[k] for k in keys]
        prev = last.groupby(grp, sort=False).shift().groupby(grp, sort=False).ffill()
        same_ts = df.groupby(keys + ["ts"], sort=False).ngroup()
        out[name] = prev.groupby(same_ts).transform("first").fillna(-1.0)

    prev_ts = ts.groupby(df["student_id"], sort=False).shift()
    gap = (ts - prev_ts).dt.total_seconds()
    out["log_gap_s"] = np.log1p(gap.clip(lower=0)).fillna(-1.0)


def _recent_rate(
    df: pd.DataFrame, graded: pd.Series, correct: pd.Series, global_rate: pd.Series
) -> pd.Series:
    """Recent accuracy: the student's last RECENT answers, where learning shows before it moves the long-run
    rate."""
    grp_s = df["student_id"]
    c_prior = correct.groupby(grp_s, sort=False).cumsum() - correct
    g_prior = graded.groupby(grp_s, sort=False).cumsum() - graded
    c_win = c_prior - c_prior.groupby(grp_s, sort=False).shift(RECENT).fillna(0)
    g_win = g_prior - g_prior.groupby(grp_s, sort=False).shift(RECENT).fillna(0)
    recent = (c_win + global_rate) / (g_win + 1.0)
    return recent.groupby(df.groupby(["student_id", "ts"], sort=False).ngroup()).transform("first")


def build_features(events: pd.DataFrame) -> pd.DataFrame:
    """events: event_id, student_id, item_id, skill_id, ts, correct (nullable). Returns event_id + FEATURES."""
    df = _encoded(events)
    ts = df["ts"]
    df["ts"] = ts.astype("int64")
    graded = df["correct"].notna().astype("int64")
    correct = df["correct"].fillna(0).astype("int64")
    out = pd.DataFrame({"event_id": df["event_id"]})
    global_rate = _rates(df, out, graded, correct)
    _ability(df, out, graded, correct)
    _last_answers(df, out, ts)
    out["stu_recent_rate"] = _recent_rate(df, graded, correct, global_rate)
    return out


def load_history(engine: Engine, model: str, version_ids: list[str] | None = None) -> pd.DataFrame:
    """Clean events for the model (optionally only those versions), as the input of build_features.

    Read by the warehouse's bulk path: the nightly scoring plan reads the whole history, and row-by-row fetching
    was most of its time.
    """
    import io

    q = select(
        clean_events.c.event_id,
        clean_events.c.student_id,
        clean_events.c.item_id,
        clean_events.c.skill_id,
        clean_events.c.ts,
        clean_events.c.correct,
        clean_events.c.version_id,
    ).where(clean_events.c.model == model)
    if version_ids is not None:
        q = q.where(clean_events.c.version_id.in_(version_ids))
    with engine.connect() as conn:
        columns, data = bulk_read_tuples(conn, q)
    text = ["event_id", "student_id", "item_id", "skill_id", "version_id"]
    if isinstance(data, bytes):
        df = pd.read_csv(
            io.BytesIO(data),
            names=columns,
            header=None,
            dtype={c: str for c in text},
            keep_default_na=False,
            na_values={"correct": [""]},
        )
    else:
        df = pd.DataFrame(data, columns=columns)
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    df["correct"] = pd.to_numeric(df["correct"]).astype("Int64")
    return df
