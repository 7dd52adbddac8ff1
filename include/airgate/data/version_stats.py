"""Aggregates of one clean version, computed in the warehouse (COUNT, AVG, GROUP BY, sums of products).

Validation used to read the whole version, and the whole reference version, into pandas just to take a mean, a
median, a skill mix and a correlation: that transfer was most of its cost on a large batch. These figures are a few
numbers each, so the warehouse computes them where the rows are, with one query per figure, on SQLite and
PostgreSQL alike; only the results cross the wire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Float, Integer, and_, cast, func, select
from sqlalchemy.engine import Connection, Engine

from airgate.core.spec import ModelSpec
from airgate.core.warehouse import clean_events
from airgate.data.clean import EVENT_COLUMNS

# The numeric columns of a clean version, in frame order: what pandas' select_dtypes("number") picked before.
NUMERIC_COLUMNS = tuple(c for c in EVENT_COLUMNS if isinstance(clean_events.c[c].type, Integer))


@dataclass(frozen=True)
class ReferenceStats:
    """What the shift checks compare a new version against: the previous validated version's label mean,
    response-time median and skill mix (skill, share), sorted by skill like pandas' sort_index."""

    version_id: str
    rows: int
    label_mean: float | None
    response_time_median: float | None
    skill_mix: tuple[tuple[str, float], ...]


def row_count(engine: Engine, version_id: str) -> int:
    with engine.connect() as conn:
        return _rows(conn, version_id)


def _rows(conn: Connection, version_id: str) -> int:
    q = select(func.count()).select_from(clean_events).where(clean_events.c.version_id == version_id)
    return int(conn.execute(q).scalar_one())


def reference_stats(engine: Engine, spec: ModelSpec, version_id: str) -> ReferenceStats:
    in_version = clean_events.c.version_id == version_id
    label = clean_events.c.correct  # canonical: the spec's label role is renamed at cleaning
    with engine.connect() as conn:
        rows = _rows(conn, version_id)
        mean = conn.execute(select(func.avg(cast(label, Float))).where(in_version)).scalar_one()
        median = _median(conn, version_id, "response_time_ms", rows)
        counts = conn.execute(
            select(clean_events.c.skill_id, func.count()).where(in_version).group_by(clean_events.c.skill_id)
        ).all()
    total = sum(int(n) for _, n in counts)
    mix = tuple(sorted((str(skill), int(n) / total) for skill, n in counts)) if total else ()
    return ReferenceStats(version_id, rows, None if mean is None else float(mean), median, mix)


def _median(conn: Connection, version_id: str, column: str, rows: int) -> float | None:
    """pandas' median (the mean of the two middle values when the count is even), by ORDER BY ... LIMIT 2 OFFSET:
    portable, and PostgreSQL walks the version's rows once."""
    col = clean_events.c[column]
    where = and_(clean_events.c.version_id == version_id, col.is_not(None))
    n = int(conn.execute(select(func.count(col)).where(where)).scalar_one()) if rows else 0
    if n == 0:
        return None
    middle = (
        conn.execute(select(col).where(where).order_by(col).limit(2).offset((n - 1) // 2)).scalars().all()
    )
    picked = middle[:1] if n % 2 else middle[:2]
    return float(sum(float(v) for v in picked) / len(picked))


def duplicate_columns_in(engine: Engine, version_id: str, threshold: float) -> list[str]:
    """``expectations.duplicate_columns`` on the version's numeric columns, from aggregates the warehouse computes:
    the same pairs (pairwise-complete Pearson r; constant columns left out) without reading the rows."""
    cols = _varying(engine, version_id)
    found = []
    for i, a in enumerate(cols):
        for b in cols[i + 1 :]:
            r = _pearson(engine, version_id, a, b)
            if r is not None and abs(r) >= threshold:
                found.append(f"{a}~{b} (|r|={abs(r):.3f})")
    return found


def _varying(engine: Engine, version_id: str) -> list[str]:
    """The numeric columns with two distinct non-null values at least (pandas' ``std(ddof=0) > 0``), exactly:
    MIN < MAX, one query for all of them."""
    aggs = [f(clean_events.c[c]) for c in NUMERIC_COLUMNS for f in (func.min, func.max)]
    with engine.connect() as conn:
        row = conn.execute(select(*aggs).where(clean_events.c.version_id == version_id)).one()
    return [
        c for i, c in enumerate(NUMERIC_COLUMNS) if row[2 * i] is not None and row[2 * i] < row[2 * i + 1]
    ]


def _pearson(engine: Engine, version_id: str, a: str, b: str) -> float | None:
    """Pearson r over the rows where both are set, centred on the means first (two passes, like pandas), so the
    sums of squares do not lose the variance to rounding on a million rows."""
    both = and_(clean_events.c[a].is_not(None), clean_events.c[b].is_not(None))
    in_version = clean_events.c.version_id == version_id
    x, y = cast(clean_events.c[a], Float), cast(clean_events.c[b], Float)
    with engine.connect() as conn:
        mx, my = conn.execute(select(func.avg(x), func.avg(y)).where(in_version, both)).one()
        if mx is None:
            return None
        dx, dy = x - float(mx), y - float(my)
        sxx, syy, sxy = conn.execute(
            select(func.sum(dx * dx), func.sum(dy * dy), func.sum(dx * dy)).where(in_version, both)
        ).one()
    if not sxx or not syy:
        return None
    return float(sxy) / math.sqrt(float(sxx) * float(syy))
