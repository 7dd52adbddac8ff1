"""Lineage: from a prediction back to the files it came from, one step forward from anything, and "as of"."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from airgate.core.warehouse import file_ledger, predictions, utcnow
from airgate.governance import lineage
from airgate.serving import scoring
from tests.helpers import approve, prepare_data, roll_back, second_version, train_to_request


@pytest.fixture
def world(engine, spec, small_sim, mlflow_cfg, tmp_path: Path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """v1 trained and approved, v2 approved and scores 09-03, then a rollback to v1, which scores 09-04."""
    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    v1 = train_to_request(engine, spec, mlflow_cfg, tmp_path, labeled)
    approve(engine, spec, mlflow_cfg, v1["approval_request_id"])
    v2_req = second_version(engine, spec, mlflow_cfg, v1["approval_request_id"], trained_by="carol")
    v2 = approve(engine, spec, mlflow_cfg, v2_req)
    first = scoring.score(
        engine, scoring.ScoreConfig(spec, mlflow_cfg, "2026-09-03", "sr-1", str(tmp_path / "runs"))
    )
    mid = utcnow()
    roll_back(engine, spec, mlflow_cfg, v1["model_version"], "v2 regressed on new cohort")  # four eyes
    second = scoring.score(
        engine, scoring.ScoreConfig(spec, mlflow_cfg, "2026-09-04", "sr-2", str(tmp_path / "runs"))
    )
    return {
        "labeled": labeled,
        "v1": v1,
        "v2": v2,
        "v2_req": v2_req,
        "first": first,
        "second": second,
        "mid": mid,
    }


def _nodes(g: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [n for n in g["nodes"] if n["kind"] == kind]


def _upstream_closure(g: dict[str, Any], start: str) -> set[str]:
    parents: dict[str, set[str]] = {}
    for e in g["edges"]:
        parents.setdefault(e["target"], set()).add(e["source"])
    seen: set[str] = set()
    todo = [start]
    while todo:
        for p in parents.get(todo.pop(), set()) - seen:
            seen.add(p)
            todo.append(p)
    return seen


def test_a_prediction_traces_back_to_its_source_files(engine, spec, world) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        event = conn.execute(
            select(predictions.c.event_id).where(predictions.c.partition_key == "2026-09-04").limit(1)
        ).scalar_one()
        files = {
            r.id: r.path for r in conn.execute(select(file_ledger).where(file_ledger.c.status == "ingested"))
        }
    focus = lineage.ref("prediction", spec.name, "2026-09-04", event)
    g = lineage.graph(engine, focus)
    assert g["focus"] == focus and not g["truncated"]
    v1 = world["v1"]
    run = next(n for n in g["nodes"] if n["ref"] == "scoring_run:sr-2")
    assert run["attrs"]["model_version"] == v1["model_version"]
    assert run["attrs"]["champion_by"]["action"] == "rollback"  # how v1 came back is part of the story
    approval = next(n for n in g["nodes"] if n["ref"] == f"approval:{v1['approval_request_id']}")
    assert approval["attrs"]["approvers"] == ["approver"] and approval["attrs"]["requested_by"] == "trainer"
    assert {n["ref"] for n in _nodes(g, "training_run")} == {"training_run:tr-1"}
    kinds = {n["attrs"]["kind"] for n in _nodes(g, "dataset")}
    assert kinds == {"raw", "clean", "labeled"}
    assert {n["attrs"]["path"] for n in _nodes(g, "file")} == set(files.values())
    upstream = _upstream_closure(g, focus)  # every file is connected to the prediction through the edges
    assert {f"file:{i}" for i in files} <= upstream
    assert f"model_version:{spec.name}/{v1['model_version']}" in upstream


def test_every_node_steps_forward_too(engine, spec, world) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        fid = conn.execute(select(file_ledger.c.id).limit(1)).scalar_one()

    def down(r: str) -> set[tuple[str, str]]:
        return {(e["source"], e["target"]) for e in lineage.graph(engine, r)["edges"] if e["source"] == r}

    file_kids = down(f"file:{fid}")
    assert len(file_kids) == 1 and next(iter(file_kids))[1].startswith("batch:")
    assert ("dataset:" + world["labeled"], "training_run:tr-1") in down("dataset:" + world["labeled"])
    v1 = f"model_version:{spec.name}/{world['v1']['model_version']}"
    assert {(v1, f"approval:{world['v1']['approval_request_id']}"), (v1, "scoring_run:sr-2")} <= down(v1)
    g = lineage.graph(engine, "scoring_run:sr-2")
    focus = next(n for n in g["nodes"] if n["ref"] == "scoring_run:sr-2")
    assert focus["attrs"]["downstream_total"] == world["second"].rows_scored
    assert len(_nodes(g, "prediction")) == min(lineage.DOWNSTREAM_LIMIT, world["second"].rows_scored)


def test_as_of_names_the_version_that_produced_a_batch(engine, spec, world) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    early = lineage.as_of(engine, spec.name, now - timedelta(days=1), "2026-09-03")
    assert early["champion"] is None and early["scoring_run"] is None
    at_mid = lineage.as_of(engine, spec.name, world["mid"], "2026-09-03")
    assert at_mid["champion"]["version"] == world["v2"]["model_version"]
    assert at_mid["scoring_run"]["run_id"] == "sr-1"
    assert at_mid["scoring_run"]["model_version"] == world["v2"]["model_version"]
    assert at_mid["scoring_run"]["approvers"] == ["approver"]
    latest = lineage.as_of(engine, spec.name, now, "2026-09-04")
    assert latest["champion"]["version"] == world["v1"]["model_version"]
    assert latest["champion"]["action"] == "rollback"
    assert latest["scoring_run"]["approval_id"] == world["v1"]["approval_request_id"]


def test_bad_refs_are_named(engine) -> None:  # type: ignore[no-untyped-def]
    for bad in ["nonsense", "table:x", "prediction:only/two", "model_version:kt"]:
        with pytest.raises(lineage.LineageError) as err:
            lineage.graph(engine, bad)
        assert err.value.status == 422
    with pytest.raises(lineage.LineageError) as err:
        lineage.graph(engine, "scoring_run:nope")
    assert err.value.status == 404 and "does not exist" in err.value.message


def test_a_huge_upstream_is_cut_and_says_so(engine, spec, world) -> None:  # type: ignore[no-untyped-def]
    g = lineage.graph(engine, "scoring_run:sr-2", max_nodes=4)
    assert g["truncated"] and len(g["nodes"]) <= 4 + lineage.DOWNSTREAM_LIMIT
