"""Batch scoring: only the ledger's approved champion scores; retries, re-runs and kills leave exactly one set of
predictions per date; sharding changes where rows are scored, never what they score."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from airgate.core import audit, registry
from airgate.core.warehouse import predictions, published_predictions, scoring_runs
from airgate.governance import promotion
from airgate.serving import scoring
from tests.helpers import approve, kill_mid_write, prepare_data, train_to_request

DATE = "2026-09-03"


@pytest.fixture
def approved(engine, spec, small_sim, mlflow_cfg, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    req = train_to_request(engine, spec, mlflow_cfg, tmp_path, labeled)
    approve(engine, spec, mlflow_cfg, req["approval_request_id"])
    return req


def _cfg(spec, mlflow_cfg, tmp_path: Path, run_id: str, date: str = DATE, **kw) -> scoring.ScoreConfig:  # type: ignore[no-untyped-def]
    return scoring.ScoreConfig(spec, mlflow_cfg, date, run_id, str(tmp_path / "runs"), **kw)


def _preds(engine) -> list[dict]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(predictions)).mappings()]


def _visible(engine, model: str, date: str = DATE) -> list[dict]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(published_predictions(model, date)).mappings()]


def _status(engine, run_id: str) -> str | None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(scoring_runs.c.status).where(scoring_runs.c.run_id == run_id)).scalar()


def test_scores_carry_lineage_and_reruns_replace_the_partition(
    engine, spec, mlflow_cfg, approved, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    first = scoring.score(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-a"))
    rows = _preds(engine)
    assert first.rows_scored == len(rows) > 0
    assert {
        (r["model_version"], r["approval_id"], r["scoring_run_id"], r["feature_data_version"]) for r in rows
    } == {(approved["model_version"], approved["approval_request_id"], "sr-a", first.feature_data_version)}
    assert all(0.0 < r["score"] < 1.0 for r in rows)
    # a retry of the same run, and a re-run of the same date: still exactly one set of predictions
    scoring.score(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-a"))
    rerun = scoring.score(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-b"))
    again = _preds(engine)
    assert len(again) == len(rows) and {r["scoring_run_id"] for r in again} == {"sr-b"}
    assert sorted(r["event_id"] for r in again) == sorted(r["event_id"] for r in rows)
    assert rerun.superseded == ["sr-a"] and _status(engine, "sr-a") == "superseded"
    # the champion was resolved once, at the start, and recorded before any row was written
    started = audit.events(engine, event_type="scoring_started")
    assert [e["entity"]["scoring_run_id"] for e in started] == ["sr-a", "sr-a", "sr-b"]
    assert {e["entity"]["model_version"] for e in started} == {approved["model_version"]}


def test_shards_split_students_and_change_no_score(engine, spec, mlflow_cfg, approved, tmp_path) -> None:  # type: ignore[no-untyped-def]
    one = scoring.score(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-one", partitions=1))
    by_event = {r["event_id"]: r["score"] for r in _preds(engine)}
    p = scoring.plan(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-three", partitions=3))
    assert len(p.shards) == 3 and p.rows == one.rows_scored and all(s.rows > 0 for s in p.shards)
    for sh in p.shards:
        scoring.score_shard(engine, mlflow_cfg, str(tmp_path / "runs"), "sr-three", sh.index)
    # before the swap the date still shows the earlier run, and only it
    assert {r["scoring_run_id"] for r in _visible(engine, spec.name)} == {"sr-one"}
    scoring.publish(engine, spec, "sr-three")
    rows = _preds(engine)
    shards_of_student: dict[str, set[int]] = {}
    for r in rows:
        shards_of_student.setdefault(r["student_id"], set()).add(r["shard"])
    assert all(len(s) == 1 for s in shards_of_student.values())  # a student's rows never span two shards
    assert {r["shard"] for r in rows} == {0, 1, 2}
    assert {r["event_id"]: r["score"] for r in rows} == pytest.approx(by_event)


def test_a_retried_shard_replaces_its_rows_and_publish_waits_for_every_shard(  # type: ignore[no-untyped-def]
    engine, spec, mlflow_cfg, approved, tmp_path
) -> None:
    runs = str(tmp_path / "runs")
    p = scoring.plan(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-r", partitions=2))
    scoring.score_shard(engine, mlflow_cfg, runs, "sr-r", 0)
    with pytest.raises(scoring.PublishRefused, match="a shard has not finished"):
        scoring.publish(engine, spec, "sr-r")
    assert _visible(engine, spec.name) == []
    scoring.score_shard(engine, mlflow_cfg, runs, "sr-r", 0)  # the retry of a shard that had finished
    scoring.score_shard(engine, mlflow_cfg, runs, "sr-r", 1)
    done = scoring.publish(engine, spec, "sr-r")
    assert done.rows_scored == p.rows == len(_preds(engine))
    assert scoring.publish(engine, spec, "sr-r").rows_scored == p.rows  # a retried publish changes nothing
    refused = audit.events(engine, event_type="scoring_refused")
    assert "not published" in refused[0]["details"]["reason"]


def test_the_champion_changing_mid_run_stops_the_swap(engine, spec, mlflow_cfg, approved, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runs = str(tmp_path / "runs")
    scoring.score(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-old"))
    p = scoring.plan(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-new"))
    for sh in p.shards:
        scoring.score_shard(engine, mlflow_cfg, runs, "sr-new", sh.index)
    promotion.revoke(
        engine,
        spec,
        promotion.Actor("admin", frozenset({"admin"})),
        approved["model_version"],
        "model found to leak the label in production",
        lambda m: registry.delete_alias(mlflow_cfg, m),
    )
    with pytest.raises(scoring.PublishRefused, match="no longer the ledger's approved champion"):
        scoring.publish(engine, spec, "sr-new")
    assert {r["scoring_run_id"] for r in _visible(engine, spec.name)} == {"sr-old"}


def test_unapproved_alias_target_is_refused(engine, spec, small_sim, mlflow_cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    req = train_to_request(engine, spec, mlflow_cfg, tmp_path, labeled)
    # someone moves the alias in MLflow directly, bypassing approval
    registry.set_alias(mlflow_cfg, spec.name, req["model_version"])
    with pytest.raises(
        scoring.NotApproved, match=rf"v{req['model_version']}.*not show it as the approved champion"
    ):
        scoring.score(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-x"))
    assert _preds(engine) == []


def test_a_night_without_a_champion_yet_is_skipped_on_the_record(engine, spec, mlflow_cfg) -> None:  # type: ignore[no-untyped-def]
    """A first deployment scores nothing until something is approved: NoChampion (the DAG skips and records it),
    unlike an alias the ledger does not back, which stays a refusal."""
    with pytest.raises(scoring.NoChampion, match="has no champion yet"):
        scoring.resolve_champion(engine, spec, mlflow_cfg)
    scoring.skip_night(
        engine, spec, "sr-y", "no champion yet", airflow_run_id="scheduled__2026-12-01T02:00:00"
    )
    (skipped,) = audit.events(engine, event_type="scoring_skipped")
    assert skipped["details"] == {
        "reason": "no champion yet",
        "airflow_run_id": "scheduled__2026-12-01T02:00:00",
    }
    assert audit.events(engine, event_type="scoring_refused") == []


def test_planning_a_night_skips_without_a_champion_and_names_each_shard(  # type: ignore[no-untyped-def]
    engine, spec, mlflow_cfg, tmp_path
) -> None:
    from datetime import datetime

    from airgate.serving import nightly

    run_id = nightly.night_run_id(datetime(2026, 12, 1))
    assert run_id.startswith("sr-20261201-") and run_id != nightly.night_run_id(datetime(2026, 12, 1))
    night = nightly.plan_night(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-n"))
    assert (night.action, night.scoring_run_id, night.parts) == ("skipped", "sr-n", [])
    assert "has no champion yet" in night.reason
    assert [e["entity"]["scoring_run_id"] for e in audit.events(engine, event_type="scoring_skipped")] == [
        "sr-n"
    ]


def test_a_planned_night_hands_on_one_small_part_per_shard(  # type: ignore[no-untyped-def]
    engine, spec, mlflow_cfg, approved, tmp_path
) -> None:
    from airgate.serving import nightly

    night = nightly.plan_night(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-p", partitions=2))
    assert night.action == "planned" and [p.shard for p in night.parts] == [0, 1]
    assert {(p.scoring_run_id, p.model_version) for p in night.parts} == {("sr-p", approved["model_version"])}
    assert sum(p.rows for p in night.parts) == scoring.load_plan(str(tmp_path / "runs"), "sr-p").rows
    assert set(night.parts[0].to_dict()) == {
        "scoring_run_id",
        "shard",
        "rows",
        "model_version",
        "approval_id",
    }


@pytest.mark.api
def test_rollback_drill_next_run_scores_with_the_first_model(  # type: ignore[no-untyped-def]
    client, sqlite_engine, spec, small_sim, mlflow_cfg, tmp_path
) -> None:
    """Promote a second model (trained again, on more data), roll back to the first through the governance API,
    score: the first model scores, and the run's lineage says it became champion by that rollback."""
    from airgate.governance import lineage
    from tests.helpers import bearer

    engine = sqlite_engine
    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    first = train_to_request(engine, spec, mlflow_cfg, tmp_path, labeled, run_id="tr-1")
    approve(engine, spec, mlflow_cfg, first["approval_request_id"])
    labeled2 = prepare_data(engine, spec, small_sim, tmp_path, batches=range(2, 3))
    second = train_to_request(engine, spec, mlflow_cfg, tmp_path, labeled2, run_id="tr-2")
    approve(engine, spec, mlflow_cfg, second["approval_request_id"])
    v1, v2 = first["model_version"], second["model_version"]
    assert v1 != v2
    scoring.score(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-v2"))
    assert {r["model_version"] for r in _visible(engine, spec.name)} == {v2}

    r = client.post(
        f"/airgate/api/models/{spec.name}/rollback",
        headers=bearer("approver", "op"),
        json={"to_version": v1, "justification": "v2 mis-scores the new cohort; back to v1"},
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["status"] == "pending" and registry.alias_version(mlflow_cfg, spec.name) == v2
    )  # four eyes
    r = client.post(
        f"/airgate/api/models/{spec.name}/rollbacks/{r.json()['proposal_id']}/confirm",
        headers=bearer("admin", "admin"),
        json={"comment": "checked the cohort report"},
    )
    assert r.status_code == 200 and r.json()["status"] == "confirmed", r.text
    assert registry.alias_version(mlflow_cfg, spec.name) == v1

    after = scoring.score(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-after-rollback"))
    assert (after.model_version, after.approval_id) == (v1, first["approval_request_id"])
    assert {(r["model_version"], r["scoring_run_id"]) for r in _visible(engine, spec.name)} == {
        (v1, "sr-after-rollback")
    }
    g = lineage.graph(engine, f"scoring_run:{after.scoring_run_id}")
    focus = next(n for n in g["nodes"] if n["ref"] == g["focus"])
    assert focus["attrs"]["model_version"] == v1
    by = focus["attrs"]["champion_by"]
    assert (by["action"], by["from_version"], by["to_version"], by["actor"]) == (
        "rollback",
        v2,
        v1,
        "admin",  # the confirmer who made it take effect; the proposer is in the rollback's audit event
    )
    assert "mis-scores" in by["reason"]


KILLED_SHARD = """
import sys, time
from airgate.core import registry
from airgate.serving import scoring
from airgate.core.warehouse import make_engine

url, tracking, artifacts, runs, run_id, marker = sys.argv[1:7]
real = scoring.bulk_insert_tuples
calls = []

def write_then_hang(conn, table, columns, rows):
    n = real(conn, table, columns, rows)
    calls.append(n)
    if len(calls) == 2:  # one chunk committed, the second written in an open transaction
        open(marker, "w").write("mid-write")
        time.sleep(600)
    return n

scoring.bulk_insert_tuples = write_then_hang
scoring.score_shard(make_engine(url), registry.MlflowConfig(tracking, artifacts), runs, run_id, 0)
"""


@pytest.mark.data
def test_a_shard_killed_mid_write_leaves_one_set_of_predictions(  # type: ignore[no-untyped-def]
    engine, spec, mlflow_cfg, approved, tmp_path
) -> None:
    runs = str(tmp_path / "runs")
    small_chunks = spec.model_copy(update={"scoring": spec.scoring.model_copy(update={"chunk_rows": 100})})
    scoring.score(engine, _cfg(small_chunks, mlflow_cfg, tmp_path, "sr-before"))
    before = sorted((r["event_id"], r["score"]) for r in _visible(engine, spec.name))
    p = scoring.plan(engine, _cfg(small_chunks, mlflow_cfg, tmp_path, "sr-killed", partitions=1))
    marker = tmp_path / "marker"
    url = engine.url.render_as_string(hide_password=False)
    kill_mid_write(
        KILLED_SHARD,
        [url, mlflow_cfg.tracking_uri, mlflow_cfg.artifact_root, runs, "sr-killed", str(marker)],
        marker,
        "shard",
    )

    # The killed run wrote part of its rows; the date still shows the earlier run's, exactly.
    with engine.connect() as conn:
        partial = conn.execute(
            select(func.count()).select_from(predictions).where(predictions.c.scoring_run_id == "sr-killed")
        ).scalar_one()
    assert 0 < partial < p.rows
    assert sorted((r["event_id"], r["score"]) for r in _visible(engine, spec.name)) == before
    with pytest.raises(scoring.PublishRefused):
        scoring.publish(engine, spec, "sr-killed")

    # The scheduler's retry of the shard, then the swap: one set, the retried run's, no leftovers.
    scoring.score_shard(engine, mlflow_cfg, runs, "sr-killed", 0)
    scoring.publish(engine, spec, "sr-killed")
    rows = _preds(engine)
    assert len(rows) == p.rows == len({r["event_id"] for r in rows})
    assert {r["scoring_run_id"] for r in rows} == {"sr-killed"}
    assert sorted((r["event_id"], r["score"]) for r in rows) == before


@pytest.mark.data
def test_a_rerun_after_a_kill_abandons_the_killed_run(engine, spec, mlflow_cfg, approved, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runs = str(tmp_path / "runs")
    p = scoring.plan(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-dead"))
    scoring.score_shard(engine, mlflow_cfg, runs, "sr-dead", p.shards[0].index)  # then the worker died
    rerun = scoring.score(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-rerun"))
    assert _status(engine, "sr-dead") == "abandoned"
    rows = _preds(engine)
    assert {r["scoring_run_id"] for r in rows} == {"sr-rerun"} and len(rows) == rerun.rows_scored
    with pytest.raises(scoring.PublishRefused, match="abandoned"):
        scoring.score_shard(engine, mlflow_cfg, runs, "sr-dead", p.shards[0].index)


def test_a_night_after_an_all_quarantined_batch_scores_the_last_version_with_rows(  # type: ignore[no-untyped-def]
    engine, spec, mlflow_cfg, approved, tmp_path
) -> None:
    """A batch whose every row was quarantined is a 0-row clean version: the night scores the newest version that
    holds rows instead of failing (or publishing nothing) on the empty one."""
    from airgate.core import datasets
    from airgate.data import clean
    from tests.unit.data.test_clean import ev, raw_version

    before = datasets.latest(engine, spec.name, "clean")
    assert before is not None and before.row_count > 0
    raw_version(engine, spec, [ev(f"r{i}", response_time_ms="10") for i in range(5)])  # all rapid guesses
    (empty,) = clean.clean_pending(engine, spec).versions
    newest = datasets.latest(engine, spec.name, "clean")
    assert empty.accepted == 0 and newest is not None and newest.version_id == empty.clean_version_id
    night = scoring.score(engine, _cfg(spec, mlflow_cfg, tmp_path, "sr-after-empty"))
    assert night.feature_data_version == before.version_id and night.rows_scored > 0
