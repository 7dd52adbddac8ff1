"""Collection from SQL sources: incremental by a watermark column, with a lookback window, exactly once.

A read takes every row whose watermark is at or above ``stored - spec.source.lookback`` (the lookback in the
column's units: seconds for timestamp and date columns), plus every row whose watermark is NULL, and drops the rows
whose key (``spec.data_schema.key``) this source already delivered. So a row that is backdated, or committed by a
transaction that was still open during the previous read, arrives on a later read as long as its watermark is
within the window; the overlap never duplicates a row.

The delivered keys live in ``source_keys`` (model, source, key, the row's watermark as last seen), pruned on every
read to the keys whose watermark is still inside the next read's window, plus the keys of rows whose watermark is
NULL. The lookup is therefore bounded by the rows within one lookback (and the NULL rows), not by the history.

NULL watermarks: such a row is read on every poll (it cannot be placed in the window), delivered once (its key is
kept while its watermark stays NULL), and counted in the version's summary as ``rows_null_watermark``. When it later
gets a watermark, its key moves with it into the window (or, below the window, it is never read again). A NULL
never becomes the stored watermark: the stored one is the largest non-NULL value seen.

The stored watermark keeps its type (``watermark_type``: datetime with its offset, date, int, float, decimal,
text) and is decoded to a value of that type before it is bound, so the comparison happens in the column's own type
on SQLite and PostgreSQL. Text columns have no arithmetic: their window starts at the stored value itself.

Each read with new rows becomes one immutable raw version. The raw rows, the version, the new keys, the watermark
and the audit event commit in one transaction: a retry or a task killed mid-write resumes from the last committed
state, and two workers that read the same rows produce the same content-addressed version (and the same keys), so
the second one's write is refused instead of duplicating rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import MetaData, Table, delete, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from airgate.core import audit, datasets
from airgate.core.spec import ModelSpec
from airgate.core.tables import source_keys
from airgate.core.warehouse import bulk_insert, raw_rows, source_watermarks, utcnow
from airgate.data.privacy import Pseudonymizer, pseudonymized_columns
from airgate.data.sql_watermarks import as_text, column_kind, decode, encode, sort_key, window_start

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SqlIngest:
    raw_version_id: str | None
    rows: int
    watermark_from: str | None
    watermark_to: str | None
    status: str  # ingested | nothing_new | duplicate
    behind_watermark: int = 0  # new rows at or below the stored watermark: late or backdated data
    null_watermark: int = 0  # new rows whose watermark is NULL


@dataclass(frozen=True)
class _State:
    """What this source has delivered so far: the stored watermark (typed) and the keys within the window."""

    kind: str
    watermark: Any  # None: nothing with a watermark read yet
    stored_text: str | None  # exactly as stored, for the optimistic update
    tracked_from: Any  # keys are recorded only above this value (None: since the first read)
    known: dict[str, Any] = field(default_factory=dict)  # key -> its watermark as last seen (None: NULL)


@dataclass(frozen=True)
class _Read:
    state: _State
    fetched: list[dict[str, Any]]  # every row of the window, as the source has it
    new: list[dict[str, Any]]  # those whose key was not delivered yet, in watermark order


def _source_table(source: Engine, spec: ModelSpec) -> Table:
    schema, _, name = (spec.source.table or "").rpartition(".")
    return Table(name, MetaData(), autoload_with=source, schema=schema or None)


def _source_key(spec: ModelSpec) -> str:
    return f"{spec.source.conn_id}:{spec.source.table}"


def _columns(table: Table, spec: ModelSpec) -> tuple[str, str]:
    wm, key = spec.source.watermark_column or "", spec.data_schema.key
    for what, col in (("source.watermark_column", wm), ("schema.key", key)):
        if col not in table.c:
            raise ValueError(
                f"spec {spec.name}: {what} '{col}' is not a column of {spec.source.table} "
                f"(columns: {list(table.c.keys())}); name one of them"
            )
    return wm, key


def _recover_legacy(conn: Connection, raw_version_id: str, wm_col: str, kind: str) -> Any:
    """Before migration 0011 a NULL newest watermark was stored as the text 'None': the real one is the largest
    non-empty watermark of the raw version that stored it."""
    values = [
        decode(str(c[wm_col]), kind)
        for (c,) in conn.execute(select(raw_rows.c.content).where(raw_rows.c.version_id == raw_version_id))
        if c.get(wm_col) not in (None, "", "None")
    ]
    return max(values, default=None)


def _load_state(engine: Engine, spec: ModelSpec, kind: str, wm_col: str) -> _State:
    src = _source_key(spec)
    with engine.connect() as conn:
        row = conn.execute(
            select(source_watermarks).where(
                source_watermarks.c.model == spec.name, source_watermarks.c.source == src
            )
        ).first()
        keys = conn.execute(
            select(source_keys.c.key, source_keys.c.watermark).where(
                source_keys.c.model == spec.name, source_keys.c.source == src
            )
        ).all()
        if row is None:
            watermark = tracked = None
        elif row.watermark_type is None:  # written before 0011: keys below it were never recorded
            legacy = row.watermark == "None" and kind != "text"
            watermark = (
                _recover_legacy(conn, row.raw_version_id, wm_col, kind)
                if legacy
                else decode(row.watermark, kind)
            )
            tracked = watermark
        else:
            if row.watermark_type != kind:
                raise ValueError(
                    f"spec {spec.name}: the watermark column {spec.source.table}.{wm_col} is now {kind}, but its "
                    f"watermark was stored as {row.watermark_type}: restore the column type, or delete the "
                    f"source_watermarks and source_keys rows of source '{src}' to read it again from the start"
                )
            watermark = decode(row.watermark, kind)
            tracked = None if row.tracked_from is None else decode(row.tracked_from, kind)
    known = {k: None if w is None else decode(w, kind) for k, w in keys}
    return _State(kind, watermark, None if row is None else row.watermark, tracked, known)


def _window_query(table: Table, spec: ModelSpec, state: _State, columns: list[Any] | None = None) -> Any:
    col = table.c[spec.source.watermark_column or ""]
    q = select(*(columns or [table]))
    start = window_start(state.watermark, state.kind, spec.source.lookback)
    if state.tracked_from is not None and (start is None or start <= state.tracked_from):
        return q.where(or_(col > state.tracked_from, col.is_(None)))
    if start is not None:
        q = q.where(or_(col >= start, col.is_(None)))
    return q


def _read(engine: Engine, source: Engine, spec: ModelSpec, key_fn: Any, full: bool = True) -> _Read:
    table = _source_table(source, spec)
    wm_col, key_col = _columns(table, spec)
    state = _load_state(engine, spec, column_kind(table.c[wm_col]), wm_col)
    cols = None if full else [table.c[key_col], table.c[wm_col]]
    with source.connect() as conn:
        fetched = [dict(r) for r in conn.execute(_window_query(table, spec, state, cols)).mappings()]
    new = [r for r in fetched if key_fn(as_text(r[key_col])) not in state.known]
    new.sort(key=lambda r: sort_key(r[wm_col], as_text(r[key_col])))
    return _Read(state, fetched, new)


def count_new_rows(engine: Engine, source: Engine, spec: ModelSpec) -> int:
    """How many rows are waiting (what the next read would deliver): the sensor waits for ``min_new_rows``.

    A pseudonymised key column is compared through the same pseudonym as the read, so the count matches it; the
    key (the secret) is needed only then."""
    pseudo = _pseudonymizer(spec, None) if spec.data_schema.key in pseudonymized_columns(spec) else None
    return len(_read(engine, source, spec, _key_fn(spec, pseudo), full=False).new)


def _pseudonymizer(spec: ModelSpec, given: Pseudonymizer | None) -> Pseudonymizer | None:
    if given is not None:
        return given
    return Pseudonymizer.from_spec(spec) if spec.privacy.pseudonymize else None


def _key_fn(spec: ModelSpec, pseudo: Pseudonymizer | None) -> Any:
    """Keys are recorded as stored: a pseudonymised key column is recorded by its pseudonym, never in clear."""
    if pseudo is not None and spec.data_schema.key in pseudo.columns:
        return pseudo.value
    return lambda k: k


@dataclass(frozen=True)
class _Plan:
    """The writes of one read, decided before the transaction."""

    end: Any
    insert_keys: list[dict[str, Any]]
    update_keys: dict[str, str | None]
    delete_keys: list[str]
    behind: int
    nulls: int


def _plan(read: _Read, spec: ModelSpec, key_fn: Any) -> _Plan:
    """The new watermark, and the key table pruned to the next window (plus the keys of rows still NULL)."""
    wm_col, key_col, state = spec.source.watermark_column or "", spec.data_schema.key, read.state
    seen = {key_fn(as_text(r[key_col])): r[wm_col] for r in read.fetched}
    end = max([w for w in [state.watermark, *seen.values()] if w is not None], default=None)
    floor = window_start(end, state.kind, spec.source.lookback)
    if state.tracked_from is not None and (floor is None or floor < state.tracked_from):
        floor = state.tracked_from

    def keep(w: Any) -> bool:
        return w is None or floor is None or w >= floor

    new_keys = {key_fn(as_text(r[key_col])) for r in read.new}
    inserts = [
        {"key": k, "watermark": encode(w, state.kind)} for k, w in seen.items() if k in new_keys and keep(w)
    ]
    updates, deletes = {}, []
    for k, was in state.known.items():
        if k not in seen:  # a NULL row gone from the window gained a watermark below it: never read again
            if was is None or not keep(was):
                deletes.append(k)
        elif not keep(seen[k]):
            deletes.append(k)
        elif seen[k] != was:
            updates[k] = encode(seen[k], state.kind)
    behind = sum(
        1
        for r in read.new
        if r[wm_col] is not None and state.watermark is not None and r[wm_col] <= state.watermark
    )
    nulls = sum(1 for r in read.new if r[wm_col] is None)
    return _Plan(end, inserts, updates, deletes, behind, nulls)


def _apply_keys(conn: Connection, spec: ModelSpec, plan: _Plan, vid: str) -> None:
    model, src = spec.name, _source_key(spec)
    bulk_insert(
        conn,
        source_keys,
        [{"model": model, "source": src, "raw_version_id": vid, **k} for k in plan.insert_keys],
    )
    where = (source_keys.c.model == model, source_keys.c.source == src)
    for k, w in plan.update_keys.items():
        conn.execute(update(source_keys).where(*where, source_keys.c.key == k).values(watermark=w))
    for i in range(0, len(plan.delete_keys), 500):
        conn.execute(delete(source_keys).where(*where, source_keys.c.key.in_(plan.delete_keys[i : i + 500])))


def _store_watermark(conn: Connection, spec: ModelSpec, state: _State, plan: _Plan, vid: str) -> None:
    """Advance the watermark only from the one this read started at: a concurrent writer's key inserts or this
    row's primary key refuse the second write. Nothing is stored while no row has had a watermark."""
    if plan.end is None:
        return
    values = {
        "watermark": encode(plan.end, state.kind),
        "watermark_type": state.kind,
        "tracked_from": encode(state.tracked_from, state.kind),
        "raw_version_id": vid,
        "updated_at": utcnow(),
    }
    where = [source_watermarks.c.model == spec.name, source_watermarks.c.source == _source_key(spec)]
    if state.stored_text is not None:
        updated = conn.execute(
            source_watermarks.update()
            .where(*where, source_watermarks.c.watermark == state.stored_text)
            .values(**values)
        ).rowcount
        if updated:
            return
    conn.execute(source_watermarks.insert().values(model=spec.name, source=_source_key(spec), **values))


def ingest_new_rows(
    engine: Engine,
    source: Engine,
    spec: ModelSpec,
    actor: str = "airflow",
    pseudonymizer: Pseudonymizer | None = None,
) -> SqlIngest:
    """Read the window, drop the delivered keys, and write the rest as one raw version (see the module doc).

    With ``spec.privacy.pseudonymize`` the named columns are replaced by their pseudonyms before anything is
    stored (``pseudonymizer`` defaults to the spec's, keyed by its Airflow connection)."""
    pseudo = _pseudonymizer(spec, pseudonymizer)
    key_fn = _key_fn(spec, pseudo)
    read = _read(engine, source, spec, key_fn)
    state = read.state
    start = encode(state.watermark, state.kind)
    if not read.new:
        return SqlIngest(None, 0, start, start, "nothing_new")
    plan = _plan(read, spec, key_fn)
    end = encode(plan.end, state.kind)
    rows = [{k: "" if v is None else as_text(v) for k, v in r.items()} for r in read.new]
    if pseudo is not None:
        rows = pseudo.apply_rows(rows)
    src = _source_key(spec)
    batch_id = f"sql-{datasets.content_hash('batch', spec.name, [(start, end)])[:16]}"
    digest = datasets.content_hash(
        "raw",
        spec.name,
        ((i, sorted(r.items())) for i, r in enumerate(rows)),
        extra={"source": src, "from": start, "to": end},
    )
    counts = {
        "rows": len(rows),
        "watermark_from": start,
        "watermark_to": end,
        "rows_behind_watermark": plan.behind,
        "rows_null_watermark": plan.nulls,
        "rows_already_read": len(read.fetched) - len(read.new),
    }
    try:
        with engine.begin() as conn:
            vid = datasets.insert_version(
                conn,
                model=spec.name,
                kind="raw",
                digest=digest,
                parents=[],
                row_count=len(rows),
                schema={"columns": list(rows[0].keys())},
                batch_id=batch_id,
                summary={"source": src, "rows_added": len(rows), "lookback": spec.source.lookback, **counts},
            )
            bulk_insert(
                conn, raw_rows, [{"version_id": vid, "row_num": i, "content": r} for i, r in enumerate(rows)]
            )
            _apply_keys(conn, spec, plan, vid)
            _store_watermark(conn, spec, state, plan, vid)
            audit.append(
                conn,
                actor=actor,
                event_type="ingest",
                model=spec.name,
                entity={"batch_id": batch_id, "raw_version_id": vid, "source": src},
                details=counts,
            )
    except IntegrityError:
        return SqlIngest(None, 0, start, end, "duplicate")
    log.info(
        "ingested %d rows from %s (window from %s, %d behind the watermark, %d NULL) as %s",
        len(rows), src, start, plan.behind, plan.nulls, vid,
    )  # fmt: skip
    return SqlIngest(vid, len(rows), start, end, "ingested", plan.behind, plan.nulls)


def current_watermark(engine: Engine, spec: ModelSpec) -> str | None:
    """The stored watermark as text (its type is in ``source_watermarks.watermark_type``)."""
    with engine.connect() as conn:
        return conn.execute(
            select(source_watermarks.c.watermark).where(
                source_watermarks.c.model == spec.name, source_watermarks.c.source == _source_key(spec)
            )
        ).scalar()
