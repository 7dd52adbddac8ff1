"""Where a clean run keeps its rows until the version id is known: temporary tables in the run's transaction.

The version id is the content hash, known only after the last chunk; clean_events and quarantine both carry it.
So the chunks' accepted and rejected rows are written to temporary tables (COPY on PostgreSQL), which also answer
the batch-level questions in SQL: was this key seen in an earlier chunk, which entities have too few events. At the
end one INSERT ... SELECT each moves them under the version id, and the tables are dropped. They live in the
writing transaction only: a failed run leaves nothing behind, and memory never holds more than one chunk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    literal,
    select,
)
from sqlalchemy.engine import Connection

from airgate.core.warehouse import bulk_insert_tuples, clean_events, is_postgres, quarantine, raw_rows
from airgate.data.clean_rules import EVENT_COLUMNS, Roles

_md = MetaData()
_rows = Table(
    "airgate_clean_stage",
    _md,
    Column("row_num", Integer, primary_key=True),
    Column("event_id", String(128), nullable=False, unique=True),
    Column("student_id", String(128), nullable=False),
    Column("item_id", String(128), nullable=False),
    Column("skill_id", String(128), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("response_time_ms", Integer, nullable=False),
    Column("answer", Text),
    Column("correct", Integer),
    prefixes=["TEMPORARY"],
)
_rejects = Table(
    "airgate_clean_rejects",
    _md,
    Column("row_num", Integer, primary_key=True),
    Column("reason", String(48), nullable=False),
    Column("detail", Text),
    Column("content", JSON, nullable=False),
    prefixes=["TEMPORARY"],
)
_keys = Table(
    "airgate_clean_keys",
    _md,
    Column("event_id", String(128), primary_key=True),
    prefixes=["TEMPORARY"],
)
_TABLES = (_rows, _rejects, _keys)


def create(conn: Connection) -> None:
    for t in _TABLES:
        t.drop(conn, checkfirst=True)
        t.create(conn)


def known_keys(conn: Connection, model: str, keys: list[str]) -> tuple[set[str], set[str]]:
    """Of these (distinct) keys: those an earlier clean version of the model holds, and those an earlier chunk of
    this run staged. Index lookups in the database (two joins); only the duplicates come back."""
    bulk_insert_tuples(conn, _keys, ["event_id"], [(k,) for k in keys])
    if is_postgres(conn):  # a temporary table has no statistics until analysed: the planner would guess
        conn.exec_driver_sql(f"ANALYZE {_keys.name}")
    k = _keys.c.event_id
    on_earlier = and_(clean_events.c.model == model, clean_events.c.event_id == k)
    earlier = set(conn.execute(select(k).select_from(_keys.join(clean_events, on_earlier))).scalars())
    staged = set(conn.execute(select(k).select_from(_keys.join(_rows, _rows.c.event_id == k))).scalars())
    if is_postgres(conn):
        conn.exec_driver_sql(f"TRUNCATE {_keys.name}")  # a DELETE would leave 100k dead rows per chunk
    else:
        conn.execute(_keys.delete())  # SQLite empties a table without WHERE in one step
    return earlier, staged - earlier


def accepted_frame(values: pd.DataFrame) -> pd.DataFrame:
    """Accepted rows as they are written and hashed: ts as the UTC text SQLAlchemy stores in SQLite
    ("YYYY-MM-DD HH:MM:SS.ffffff"), whole-number response times, the label 0/1 or missing."""
    utc = values["ts"].dt.tz_convert(None).to_numpy().astype("datetime64[us]")
    text = pd.Series(np.datetime_as_string(utc, unit="us"), index=values.index).str.replace("T", " ", n=1)
    return pd.DataFrame(
        {
            "event_id": values["event_id"],
            "student_id": values["student_id"],
            "item_id": values["item_id"],
            "skill_id": values["skill_id"],
            "ts": text,
            "response_time_ms": values["response_time_ms"].astype("int64"),
            "answer": values["answer"],
            "correct": values["correct"].astype("Int64"),
        },
        index=values.index,
    )


def put_accepted(conn: Connection, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    ts = frame["ts"] + "+00:00" if is_postgres(conn) else frame["ts"]
    correct = frame["correct"].astype(object).where(frame["correct"].notna(), None)
    cols = [frame[c].tolist() for c in EVENT_COLUMNS[:4]]
    rows = list(
        zip(
            frame.index.tolist(),
            *cols,
            ts.tolist(),
            frame["response_time_ms"].tolist(),
            frame["answer"].tolist(),
            correct.tolist(),
            strict=True,
        )
    )
    bulk_insert_tuples(conn, _rows, ["row_num", *EVENT_COLUMNS], rows)


def put_rejected(conn: Connection, reason: pd.Series, detail: pd.Series, contents: pd.Series) -> None:
    """Rejected rows with their reason, detail and the raw content as it arrived (JSON text: a NUL byte stays the
    escape \\u0000, which PostgreSQL's json type, unlike jsonb and text, accepts)."""
    if reason.empty:
        return
    rows = list(
        zip(
            reason.index.tolist(),
            reason.tolist(),
            detail.astype(str).tolist(),
            contents.tolist(),
            strict=True,
        )
    )
    bulk_insert_tuples(conn, _rejects, ["row_num", "reason", "detail", "content"], rows)


def reject_too_few(conn: Connection, raw_version_id: str, minimum: int, roles: Roles) -> int:
    """Move the staged rows of entities with fewer than ``minimum`` accepted events to the rejects (counted in
    SQL: memory holds no per-entity state); returns how many."""
    if minimum <= 1:
        return 0  # every staged entity has at least one event
    few = select(_rows.c.student_id).group_by(_rows.c.student_id).having(func.count() < minimum)
    detail = f"{roles.name('student_id')} has fewer than {minimum} clean events"
    joined = _rows.join(
        raw_rows, and_(raw_rows.c.version_id == raw_version_id, raw_rows.c.row_num == _rows.c.row_num)
    )
    doomed = _rows.c.student_id.in_(few)
    moved = conn.execute(select(func.count()).select_from(_rows).where(doomed)).scalar_one()
    if not moved:
        return 0
    conn.execute(
        _rejects.insert().from_select(
            ["row_num", "reason", "detail", "content"],
            select(_rows.c.row_num, literal("too_few_events"), literal(detail), raw_rows.c.content)
            .select_from(joined)
            .where(doomed),
        )
    )
    conn.execute(_rows.delete().where(doomed))
    return int(moved)


def accepted_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(_rows)).scalar_one())


def publish(conn: Connection, version_id: str, model: str, raw_version_id: str) -> None:
    """The staged rows into clean_events and quarantine under the version id, then the stage is dropped."""
    conn.execute(
        clean_events.insert().from_select(
            ["version_id", "model", *EVENT_COLUMNS],
            select(literal(version_id), literal(model), *[_rows.c[c] for c in EVENT_COLUMNS]).order_by(
                _rows.c.row_num
            ),
        )
    )
    conn.execute(
        quarantine.insert().from_select(
            ["version_id", "raw_version_id", "row_num", "reason", "detail", "content"],
            select(
                literal(version_id),
                literal(raw_version_id),
                _rejects.c.row_num,
                _rejects.c.reason,
                _rejects.c.detail,
                _rejects.c.content,
            ).order_by(_rejects.c.row_num),
        )
    )
    for t in _TABLES:
        t.drop(conn)
