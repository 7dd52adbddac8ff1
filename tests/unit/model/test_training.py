"""The model plane: candidates tuned on train + validation, one selection by the spec's rule, one test read.

Runs on SQLite and PostgreSQL: the Optuna study lives in the warehouse database either way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from airgate.core import audit, storage
from airgate.core.warehouse import model_candidates
from airgate.model import training, tuning
from tests.helpers import prepare_data


def _cfg(spec, labeled: str, mlflow_cfg, tmp_path: Path, run_id: str = "tr-t") -> training.TrainConfig:  # type: ignore[no-untyped-def]
    return training.TrainConfig(
        spec, labeled, run_id, "trainer", mlflow_cfg, str(tmp_path / "runs"), "abc123"
    )


@pytest.fixture
def trained(engine, spec, small_sim, mlflow_cfg, tmp_path: Path):  # type: ignore[no-untyped-def]
    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    cfg = _cfg(spec, labeled, mlflow_cfg, tmp_path)
    return cfg, training.train(engine, cfg)


def test_tunes_each_candidate_in_the_warehouse_study_and_selects_by_the_rule(engine, spec, trained) -> None:  # type: ignore[no-untyped-def]
    import optuna

    cfg, result = trained
    lgbm = training.load_result(cfg, "lightgbm")
    study = optuna.load_study(
        study_name=f"{cfg.training_run_id}:lightgbm", storage=engine.url.render_as_string(hide_password=False)
    )
    assert len(study.trials) == spec.tuning.n_trials == lgbm.n_trials
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    # the written-down configuration is always trial 0, so tuning cannot end below it
    assert study.trials[0].params["num_leaves"] == spec.candidates[1].params["num_leaves"]
    assert lgbm.valid["auc"] >= max(p.metrics["auc"] for p in lgbm.points if p.feasible) - 1e-12
    # the rule: best validation AUC among the points that meet p95 latency <= 100
    best = tuning.select(list(lgbm.points), spec)
    assert result.chosen == "lightgbm" and lgbm.chosen_trial == best.trial
    assert result.pareto["size"] >= 1 and Path(result.pareto["plot"]).stat().st_size > 5_000
    front = json.loads(Path(result.pareto["path"]).read_text())
    # the stored file reads back as the same typed result, and the mapped task's XCom stays a small summary
    assert training.CandidateResult.from_json(lgbm.to_json()) == lgbm
    assert lgbm.xcom() == {"candidate": "lightgbm", "valid_auc": lgbm.valid["auc"], "n_trials": lgbm.n_trials}
    assert sum(p["on_front"] for p in front["points"]) == result.pareto["size"]
    assert lgbm.repro_max_abs_diff <= spec.gates.reproducibility_tolerance


def test_test_split_is_read_once_and_only_for_the_chosen_and_the_baseline(
    engine, trained, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    cfg, result = trained
    reads = training.test_reads(engine, cfg.training_run_id)
    assert len(reads) == 1 and reads[0]["reader"].endswith(result.model_uri)
    assert set(result.metrics["baseline"]) >= {"test_auc"} and "test_auc" in result.metrics["lightgbm"]
    # another model may not look at this run's test set
    with pytest.raises(training.TestSetAlreadyRead, match="already read"):
        training.read_test_once(engine, cfg, "models:/some-other-model")
    # the retry of the same evaluation may (the choice was fixed before the first read), and adds no record
    training.read_test_once(engine, cfg, result.model_uri)
    assert len(training.test_reads(engine, cfg.training_run_id)) == 1
    with pytest.raises(ValueError, match="read once"):
        training.load_split(cfg, "test")
    # a tampered test file is refused
    path = Path(cfg.runs_dir) / cfg.training_run_id / "split" / "test.parquet"
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(training.TestSetAlreadyRead, match="changed on disk"):
        training.read_test_once(engine, cfg, result.model_uri)


def test_tuning_never_opens_the_test_split(
    engine, spec, small_sim, mlflow_cfg, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    cfg = _cfg(spec, labeled, mlflow_cfg, tmp_path, "tr-peek")
    training.prepare(engine, cfg)
    opened: list[str] = []
    real = storage.open_read

    def spy(path, *a, **kw):  # type: ignore[no-untyped-def]  # every read of a stored file comes through here
        opened.append(storage.as_string(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(storage, "open_read", spy)
    results = [training.train_candidate(engine, cfg, c.name) for c in spec.candidates]
    assert opened and not [p for p in opened if p.endswith("test.parquet")]
    assert training.test_reads(engine, cfg.training_run_id) == []
    training.finalize(engine, cfg, results)
    assert isinstance(cfg.runs_dir, str)  # _cfg passes a local folder
    assert [p for p in opened if p.endswith("test.parquet")] == [
        str(Path(cfg.runs_dir) / "tr-peek" / "split" / "test.parquet")
    ]


def test_a_retried_candidate_resumes_its_study_and_reproduces(
    engine, spec, small_sim, mlflow_cfg, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import optuna

    labeled = prepare_data(engine, spec, small_sim, tmp_path)
    cfg = _cfg(spec, labeled, mlflow_cfg, tmp_path, "tr-retry")
    first = training.train_candidate(engine, cfg, "lightgbm")
    Path(
        training.result_path(cfg, "lightgbm")
    ).unlink()  # as if the task died after tuning, before recording it
    again = training.train_candidate(engine, cfg, "lightgbm")
    study = optuna.load_study(
        study_name="tr-retry:lightgbm", storage=engine.url.render_as_string(hide_password=False)
    )
    assert len(study.trials) == spec.tuning.n_trials, "the retry re-ran trials that had finished"
    assert again.valid["auc"] == first.valid["auc"] and again.params == first.params
    assert again.repro_max_abs_diff <= spec.gates.reproducibility_tolerance
    # a finished candidate is returned as is
    assert training.train_candidate(engine, cfg, "lightgbm").mlflow_run_id == again.mlflow_run_id


def test_every_trial_and_the_final_model_are_in_mlflow(engine, trained) -> None:  # type: ignore[no-untyped-def]
    import mlflow
    from mlflow.tracking import MlflowClient

    cfg, result = trained
    client = MlflowClient(tracking_uri=cfg.mlflow.tracking_uri)
    parent = client.get_run(result.mlflow_run_id)
    tags = parent.data.tags
    assert tags["airgate.data_version"] == cfg.labeled_version_id
    assert tags["airgate.label_version"] == cfg.labeled_version_id
    assert tags["airgate.spec_hash"] == cfg.spec.spec_hash and tags["airgate.code_version"] == "abc123"
    assert tags["airgate.kind"] == "lightgbm" and len(tags["airgate.split_hash"]) == 64
    assert parent.data.metrics["test_auc"] == pytest.approx(result.metrics["lightgbm"]["test_auc"])
    trials = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(trials) == cfg.spec.tuning.n_trials
    assert all(
        "valid_auc" in t.data.metrics and "valid_p95_latency_ms_per_1k" in t.data.metrics for t in trials
    )
    info = mlflow.models.get_model_info(result.model_uri)
    assert info.signature is not None and info.saved_input_example_info is not None
    reqs = Path(mlflow.artifacts.download_artifacts(result.model_uri)) / "requirements.txt"
    assert "lightgbm==" in reqs.read_text()


def test_training_is_idempotent_and_audited(engine, trained) -> None:  # type: ignore[no-untyped-def]
    cfg, result = trained
    again = training.train(engine, cfg)
    assert again.mlflow_run_id == result.mlflow_run_id
    with engine.connect() as conn:
        assert len(conn.execute(select(model_candidates)).all()) == 1
    kinds = [e["event_type"] for e in audit.events(engine, model=cfg.spec.name)]
    assert kinds.count("train_split") == 1 and kinds.count("tune") == len(cfg.spec.candidates)
    assert kinds.count("train") == 1
    assert audit.verify_chain(engine).ok


def test_a_retrain_trigger_on_already_trained_data_finds_the_earlier_run(engine, trained) -> None:  # type: ignore[no-untyped-def]
    """Same labeled version, spec and code: the same model would come out, so the train DAG skips (and says why).
    A changed spec or new code is something new to train."""
    cfg, result = trained
    done = training.already_trained(engine, cfg.spec, cfg.labeled_version_id, cfg.code_version)
    assert done is not None and done["training_run_id"] == result.training_run_id
    assert training.already_trained(engine, cfg.spec, cfg.labeled_version_id, "another-commit") is None
    changed = cfg.spec.model_copy(
        update={"gates": cfg.spec.gates.model_copy(update={"beat_baseline_by": 0.02})}
    )
    assert training.already_trained(engine, changed, cfg.labeled_version_id, cfg.code_version) is None
    assert training.already_trained(engine, cfg.spec, "labeled-newer", cfg.code_version) is None


def test_nothing_feasible_means_no_model(engine, spec, small_sim, mlflow_cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from airgate.core.spec import Constraint

    strict = spec.model_copy(
        update={
            "constraints": [Constraint(metric="p95_latency_ms_per_1k", max=1e-6)],
            "tuning": spec.tuning.model_copy(update={"n_trials": 2}),
        }
    )
    labeled = prepare_data(engine, strict, small_sim, tmp_path)
    cfg = _cfg(strict, labeled, mlflow_cfg, tmp_path, "tr-none")
    with pytest.raises(tuning.NoFeasiblePoint):
        training.train(engine, cfg)
    assert training.test_reads(engine, "tr-none") == [], "no choice, so no reason to look at the test set"


def test_drift_is_evidence_by_default_and_a_gate_when_the_spec_says_so(
    engine, spec, mlflow_cfg, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from airgate.data import clean, collect
    from airgate.dev.simulator import SimConfig, Simulator, write_catalog
    from airgate.model import gates
    from tests.helpers import roster_path

    sim = Simulator(
        SimConfig(students_per_batch=120, events_per_student=40, new_cohort_from_batch=2, cohort_shift=-2.0)
    )
    write_catalog(
        sim, Path(__import__("os").environ["AIRGATE_HOME"]) / "catalog" / "knowledge_tracing_items.csv"
    )
    small = spec.model_copy(update={"tuning": spec.tuning.model_copy(update={"n_trials": 1})})
    labeled = prepare_data(engine, small, sim, tmp_path)
    cfg = _cfg(small, labeled, mlflow_cfg, tmp_path, "tr-drift")
    training.train(engine, cfg)
    # a weaker cohort lands after training: the newest clean version is what the report compares with
    sim.write_batch(2, tmp_path / "landing", tmp_path / "oracle", roster_path=roster_path())
    collect.ingest(engine, small, tmp_path / "landing")
    clean.clean_pending(engine, small)
    advisory = gates.validate(engine, small, mlflow_cfg, "tr-drift", cfg.runs_dir)
    g = next(g for g in advisory.gates if g.name == "data_drift")
    assert g.state == gates.GateState.FAIL and not g.blocking and not gates.blocks(g)
    assert (
        advisory.evidence["drift"]["dataset_drift"] and Path(advisory.evidence["drift"]["html_path"]).exists()
    )
    assert "stu_resid" in advisory.evidence["drift"]["drifted"]
    strict = small.model_copy(update={"gates": small.gates.model_copy(update={"drift_blocking": True})})
    blocked = gates.validate(engine, strict, mlflow_cfg, "tr-drift", cfg.runs_dir)
    assert not blocked.approvable and any(f.startswith("data_drift") for f in blocked.failures)
    last = audit.events(engine, event_type="gate")[-1]
    assert last["details"]["approvable"] is False and any(
        "data_drift" in f for f in last["details"]["failures"]
    )


def test_a_dkt_champion_scores_and_auto_labels_through_the_same_predictor(
    engine, spec, small_sim, mlflow_cfg, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from airgate.core import registry
    from airgate.model import predictors
    from airgate.serving import autolabel, scoring
    from tests.helpers import approve, train_to_request

    full_dkt = [
        c.model_copy(update={"n_trials": 1, "params": {**c.params, "epochs": 12}}) if c.kind == "dkt" else c
        for c in spec.candidates
        if c.kind != "lightgbm"
    ]
    only_dkt = spec.model_copy(update={"candidates": full_dkt})
    labeled = prepare_data(engine, only_dkt, small_sim, tmp_path)
    req = train_to_request(engine, only_dkt, mlflow_cfg, tmp_path, labeled, run_id="tr-dkt")
    assert registry.version_tags(mlflow_cfg, spec.name, req["model_version"])[predictors.KIND_TAG] == "dkt"
    approve(engine, only_dkt, mlflow_cfg, req["approval_request_id"])
    res = scoring.score(
        engine, scoring.ScoreConfig(only_dkt, mlflow_cfg, "2026-09-03", "sr-dkt", str(tmp_path / "runs"))
    )
    with engine.connect() as conn:
        scores = [
            r.score
            for r in conn.execute(
                select(__import__("airgate.core.warehouse", fromlist=["predictions"]).predictions)
            )
        ]
    assert res.rows_scored == len(scores) > 0 and all(0.0 < s < 1.0 for s in scores)
    assert len(set(round(s, 6) for s in scores)) > 50, "a sequence model gives rows their own probabilities"
    predictor = autolabel.champion_predictor(engine, only_dkt, mlflow_cfg)
    assert predictor is not None and predictor.model_version == req["model_version"]
