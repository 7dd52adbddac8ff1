"""Who started a training run: one record per run, written once by its first task, read by every rule that needs it.

The separation-of-duties rules (an approver is not the trainer; a reviewer is not the trainer) compare a user name
against the person who started training. That name used to travel between the train DAG's tasks as an XCom, and any
op user can rewrite an XCom through Airflow's REST API. Here it is recorded once, from the run's own context (the
dag run's ``triggering_user_name``, which the api-server sets from the authenticated user), in the warehouse. Every
later task derives the training run's id from its *own* dag run (``training_run_id``) and reads this record; nothing
reads identity from an XCom.

A retry of the first task finds the record already there and gets it back unchanged; a different record for the same
run is refused (``IdentityConflict``), so the first write wins and cannot be replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from airgate.core.tables import training_run_identities
from airgate.core.warehouse import as_utc, utcnow

# Compared on a second write; recorded_at is when, not who, so a retry's later clock is no conflict.
_IDENTITY_FIELDS = (
    "model",
    "dag_id",
    "airflow_run_id",
    "run_type",
    "triggered_by",
    "owner",
    "labeled_version_id",
)


class IdentityConflict(RuntimeError):
    """A second, different identity record for a training run that already has one."""


@dataclass(frozen=True)
class RunIdentity:
    """Who started one training run, as Airflow reported it to the run's first task."""

    training_run_id: str
    model: str
    dag_id: str
    airflow_run_id: str
    run_type: str
    triggered_by: str | None
    owner: str
    labeled_version_id: str
    recorded_at: datetime | None = None

    @property
    def trained_by(self) -> str:
        """The user the trainer rules compare against: who triggered the run, else (scheduler, asset, cron) the
        spec's owner, who is answerable for every run nobody triggered by hand."""
        return self.triggered_by or self.owner

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["recorded_at"] = self.recorded_at.isoformat() if self.recorded_at else None
        d["trained_by"] = self.trained_by
        return d


def training_run_id(model: str, airflow_run_id: str) -> str:
    """The training run's id, derived from the dag run: every task of the train DAG computes it from its own run,
    so no task has to trust an upstream XCom for it."""
    return f"tr-{model}-{airflow_run_id}"[:80]


def _from_row(row: Any) -> RunIdentity:
    m = row._mapping
    return RunIdentity(
        training_run_id=m["training_run_id"],
        model=m["model"],
        dag_id=m["dag_id"],
        airflow_run_id=m["airflow_run_id"],
        run_type=m["run_type"],
        triggered_by=m["triggered_by"],
        owner=m["owner"],
        labeled_version_id=m["labeled_version_id"],
        recorded_at=as_utc(m["recorded_at"]),
    )


def load_identity(engine_or_conn: Engine | Connection, training_run_id: str) -> RunIdentity | None:
    """The run's identity record, or None when the run has none (trained before records existed, or never)."""
    q = select(training_run_identities).where(training_run_identities.c.training_run_id == training_run_id)
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.connect() as conn:
            row = conn.execute(q).first()
    else:
        row = engine_or_conn.execute(q).first()
    return _from_row(row) if row is not None else None


def trainers_of(conn: Connection, model: str) -> set[str]:
    """Everyone who is the trainer of some training run of ``model`` (the spec's owner for untriggered runs)."""
    q = select(training_run_identities.c.triggered_by, training_run_identities.c.owner).where(
        training_run_identities.c.model == model
    )
    return {triggered or owner for triggered, owner in conn.execute(q)}


def _check_same(stored: RunIdentity, ident: RunIdentity) -> RunIdentity:
    diff = {
        k: (getattr(stored, k), getattr(ident, k))
        for k in _IDENTITY_FIELDS
        if getattr(stored, k) != getattr(ident, k)
    }
    if diff:
        raise IdentityConflict(
            f"training run {ident.training_run_id} already has an identity record; refusing a different one: "
            + ", ".join(f"{k}: stored {a!r}, offered {b!r}" for k, (a, b) in sorted(diff.items()))
        )
    return stored


def record_identity(engine: Engine, ident: RunIdentity) -> RunIdentity:
    """Write the run's identity once and return what is stored: the same record again on a retry, or
    ``IdentityConflict`` when the run already has a different one (the first write wins)."""
    stored = load_identity(engine, ident.training_run_id)
    if stored is not None:
        return _check_same(stored, ident)
    values = {k: getattr(ident, k) for k in ("training_run_id", *_IDENTITY_FIELDS)}
    try:
        with engine.begin() as conn:
            conn.execute(training_run_identities.insert().values(**values, recorded_at=utcnow()))
    except IntegrityError:  # a concurrent first write: compare against the winner
        pass
    stored = load_identity(engine, ident.training_run_id)
    assert stored is not None
    return _check_same(stored, ident)
