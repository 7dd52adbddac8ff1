"""Who trained a model comes from the run's identity record, written once; registration opens the request with it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from airgate.core.run_identity import (
    IdentityConflict,
    RunIdentity,
    load_identity,
    record_identity,
    trainers_of,
    training_run_id,
)
from airgate.governance import promotion, registration
from airgate.governance.promotion import GovernanceError


def _ident(**kw: Any) -> RunIdentity:
    base = RunIdentity(
        training_run_id=training_run_id("knowledge_tracing", "manual__1"),
        model="knowledge_tracing",
        dag_id="knowledge_tracing__train",
        airflow_run_id="manual__1",
        run_type="manual",
        triggered_by="alice",
        owner="trainer",
        labeled_version_id="lab-1",
    )
    return replace(base, **kw)


def test_the_identity_is_written_once_and_a_retry_gets_it_back(engine) -> None:  # type: ignore[no-untyped-def]
    assert load_identity(engine, "tr-knowledge_tracing-manual__1") is None
    first = record_identity(engine, _ident())
    assert first.trained_by == "alice" and first.recorded_at is not None
    again = record_identity(engine, _ident())  # prepare_split retried
    assert again == first
    with pytest.raises(IdentityConflict, match="triggered_by: stored 'alice', offered 'mallory'"):
        record_identity(engine, _ident(triggered_by="mallory"))
    with pytest.raises(IdentityConflict, match="labeled_version_id"):
        record_identity(engine, _ident(labeled_version_id="lab-2"))
    assert load_identity(engine, first.training_run_id) == first


def test_a_run_nobody_triggered_is_the_owners(sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    sched = record_identity(
        sqlite_engine,
        _ident(
            training_run_id="tr-knowledge_tracing-scheduled__1",
            airflow_run_id="scheduled__1",
            triggered_by=None,
        ),
    )
    assert sched.trained_by == "trainer" and sched.as_dict()["trained_by"] == "trainer"
    record_identity(sqlite_engine, _ident())
    with sqlite_engine.connect() as conn:
        assert trainers_of(conn, "knowledge_tracing") == {"alice", "trainer"}
        assert trainers_of(conn, "other") == set()


def test_the_training_run_id_is_derived_and_bounded() -> None:
    assert training_run_id("m", "manual__x") == "tr-m-manual__x"
    assert len(training_run_id("m", "x" * 200)) == 80


def _candidate(monkeypatch, trained_by: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A registered candidate row (no MLflow call) and a request opener that records who it was opened for."""
    from airgate.model import training

    opened: dict[str, Any] = {}
    row = {
        "training_run_id": _ident().training_run_id,
        "status": "registered",
        "model_version": "3",
        "gate_report": {},
        "evidence_hash": "h",
        "trained_by": trained_by,
    }
    monkeypatch.setattr(training, "candidate_row", lambda engine, run_id: row)

    def fake_open(engine, spec, version, run_id, evidence, evidence_hash, requested_by, **kw):  # type: ignore[no-untyped-def]
        opened["requested_by"] = requested_by
        return "apr-1"

    monkeypatch.setattr(promotion, "open_request", fake_open)
    return opened


def test_the_request_names_the_recorded_trainer(sqlite_engine, spec, mlflow_cfg, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    opened = _candidate(monkeypatch, trained_by="alice")
    record_identity(sqlite_engine, _ident())
    out = registration.register_and_request(
        sqlite_engine, spec, mlflow_cfg, _ident().training_run_id, require_identity=True
    )
    assert out["approval_request_id"] == "apr-1" and opened == {"requested_by": "alice"}


def test_a_candidate_that_disagrees_with_its_record_opens_no_request(
    sqlite_engine, spec, mlflow_cfg, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The attack: the trainer name that reached the candidate row was rewritten on the way (an XCom)."""
    opened = _candidate(monkeypatch, trained_by="mallory")
    record_identity(sqlite_engine, _ident())
    with pytest.raises(GovernanceError) as err:
        registration.register_and_request(sqlite_engine, spec, mlflow_cfg, _ident().training_run_id)
    assert err.value.code == "identity_mismatch" and err.value.status == 409 and opened == {}


def test_the_dag_path_refuses_a_run_without_a_record(sqlite_engine, spec, mlflow_cfg, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    opened = _candidate(monkeypatch, trained_by="alice")
    with pytest.raises(GovernanceError) as err:
        registration.register_and_request(
            sqlite_engine, spec, mlflow_cfg, _ident().training_run_id, require_identity=True
        )
    assert err.value.code == "no_identity" and opened == {}
    # Outside the DAG (library use, older runs) the candidate's own trainer is used, as before.
    registration.register_and_request(sqlite_engine, spec, mlflow_cfg, _ident().training_run_id)
    assert opened == {"requested_by": "alice"}
