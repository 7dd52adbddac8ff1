"""Alembic migrations for the warehouse: run once at deploy time, checked by every process that connects.

``upgrade(engine)`` brings a database to head in place and is what ``python -m airgate.cli migrate`` (``make
init``, an init container of the Helm chart's migration job) runs. Several deploy steps may start it at once, so it is
serialised: a session advisory lock on PostgreSQL, a file lock beside the database file on SQLite. Tasks and the
plugin never migrate: ``check_current`` tells them, cheaply, whether the schema is the one this code was written
for, and names the command that fixes it when it is not.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

HERE = Path(__file__).resolve().parent
VERSION_TABLE = "airgate_alembic_version"
# Any constant works; it only has to be the same in every process (pg_advisory_lock takes a bigint).
PG_LOCK_KEY = 0x41495247415445  # "AIRGATE"
MIGRATE_COMMAND = "python -m airgate.cli migrate (make init runs it)"


class SchemaNotCurrent(RuntimeError):
    """The warehouse's schema is not the revision this code expects: migrations have not run for this release."""


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    cfg.attributes["engine"] = engine
    return cfg


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One migrator at a time across processes and hosts sharing this database."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the warehouse to ``revision``; safe to start from several processes at once (they take turns)."""
    with _migration_lock(engine):
        command.upgrade(alembic_config(engine), revision)


@lru_cache(maxsize=1)
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(None)).get_current_head()  # type: ignore[arg-type]
    if head is None:
        raise RuntimeError(f"no migrations found under {HERE / 'versions'}")
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def check_current(engine: Engine) -> None:
    """Raise SchemaNotCurrent, naming the database and the fix, unless the schema is at this code's head."""
    found, wanted = current_revision(engine), head_revision()
    if found != wanted:
        where = engine.url.render_as_string(hide_password=True)
        state = "has no airgate schema" if found is None else f"is at revision {found}"
        raise SchemaNotCurrent(
            f"the airgate warehouse {where} {state}, this code needs {wanted}: run "
            f"{MIGRATE_COMMAND} against it once per release, before the DAGs run"
        )
