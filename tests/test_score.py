"""Batch scoring: only the ledger's approved champion scores; re-runs leave exactly one set of predictions."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from airgate import audit, registry, score
from airgate.warehouse import predictions, predictions_staging, scoring_runs

from .helpers import approve, prepare_data, train_to_request

pytestmark = pytest.mark.unit


@pytest.fixture
def approved(engine, spec, small_sim, mlflow_cfg, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    req = train_to_request(engine, spec, mlflow_cfg, tmp_path, labeled)
    approve(engine, spec, mlflow_cfg, req["approval_request_id"])
    return req


def _preds(engine) -> list[dict]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(predictions)).mappings()]


def test_scores_carry_lineage_and_reruns_replace_the_partition(engine, spec, mlflow_cfg, approved) -> None:  # type: ignore[no-untyped-def]
    first = score.score(engine, score.ScoreConfig(spec, mlflow_cfg, "2026-09-03", "sr-a"))
    rows = _preds(engine)
    assert first.rows_scored == len(rows) > 0
    assert {(r["model_version"], r["approval_id"], r["scoring_run_id"], r["feature_data_version"]) for r in rows} == \
        {(approved["model_version"], approved["approval_request_id"], "sr-a", first.feature_data_version)}
    assert all(0.0 < r["score"] < 1.0 for r in rows)
    # a retry of the same run, and a re-run of the same date: still exactly one set of predictions
    score.score(engine, score.ScoreConfig(spec, mlflow_cfg, "2026-09-03", "sr-a"))
    score.score(engine, score.ScoreConfig(spec, mlflow_cfg, "2026-09-03", "sr-b"))
    again = _preds(engine)
    assert len(again) == len(rows) and {r["scoring_run_id"] for r in again} == {"sr-b"}
    assert sorted(r["event_id"] for r in again) == sorted(r["event_id"] for r in rows)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(predictions_staging)).scalar_one() == 0


def test_a_run_killed_before_the_swap_changes_nothing(engine, spec, mlflow_cfg, approved, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    score.score(engine, score.ScoreConfig(spec, mlflow_cfg, "2026-09-03", "sr-a"))
    before = sorted((r["event_id"], r["scoring_run_id"]) for r in _preds(engine))
    real_insert = score.insert

    def die(*a, **k):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt("worker killed during the swap")

    monkeypatch.setattr(score, "insert", die)
    with pytest.raises(KeyboardInterrupt):
        score.score(engine, score.ScoreConfig(spec, mlflow_cfg, "2026-09-03", "sr-killed"))
    monkeypatch.setattr(score, "insert", real_insert)
    assert sorted((r["event_id"], r["scoring_run_id"]) for r in _preds(engine)) == before
    retry = score.score(engine, score.ScoreConfig(spec, mlflow_cfg, "2026-09-03", "sr-killed"))
    assert {r["scoring_run_id"] for r in _preds(engine)} == {"sr-killed"} and len(_preds(engine)) == retry.rows_scored
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(predictions_staging)).scalar_one() == 0
        status = conn.execute(select(scoring_runs.c.status).where(scoring_runs.c.run_id == "sr-killed")).scalar()
    assert status == "succeeded"


def test_unapproved_alias_target_is_refused(engine, spec, small_sim, mlflow_cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    req = train_to_request(engine, spec, mlflow_cfg, tmp_path, labeled)
    # someone moves the alias in MLflow directly, bypassing approval
    registry.set_alias(mlflow_cfg, spec.name, req["model_version"])
    with pytest.raises(score.NotApproved, match=rf"v{req['model_version']}.*not show it as the approved champion"):
        score.score(engine, score.ScoreConfig(spec, mlflow_cfg, "2026-09-03", "sr-x"))
    assert _preds(engine) == []


def test_no_champion_is_refused_clearly(engine, spec, mlflow_cfg) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(score.NotApproved, match="has no champion"):
        score.resolve_champion(engine, spec, mlflow_cfg)
    score.refuse(engine, spec, "sr-y", "no champion")
    assert audit.events(engine, event_type="scoring_refused")[0]["details"]["reason"] == "no champion"
