"""Alembic environment: runs online against the engine handed in by ``airgate.core.migrations.upgrade``."""

from __future__ import annotations

from alembic import context

from airgate.core.warehouse import metadata

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        version_table="airgate_alembic_version",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
