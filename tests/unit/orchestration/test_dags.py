"""DAG integrity: the files import cleanly and cheaply, and every generated DAG is wired as documented."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
HEAVY = ["torch", "lightgbm", "mlflow", "great_expectations", "evidently", "optuna", "pandas", "sklearn"]
STAGES = ["collect", "clean", "label", "train", "score", "monitor"]


def _subprocess_json(code: str, **env: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.mark.dag_import
def test_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert {f"knowledge_tracing__{s}" for s in STAGES} <= set(dagbag.dag_ids)


@pytest.mark.dag_import
def test_loading_dag_files_imports_nothing_heavy() -> None:
    code = (
        "import json, runpy, sys, glob\n"
        "for f in sorted(glob.glob('dags/*.py')):\n"
        "    runpy.run_path(f)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.dag_import
def test_ruff_bans_heavy_module_level_imports_in_dag_code() -> None:
    """TID253 in pyproject.toml: this is the rule that keeps the check above true as the code grows."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    out = subprocess.run(
        [
            ruff,
            "check",
            "--select",
            "TID253,AIR",
            "dags",
            "plugins",
            "include/airgate/orchestration/builders.py",
            "include/airgate/orchestration/dags",
            "include/airgate/core/spec",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout
    probe = ROOT / "dags" / "_probe_heavy.py"
    probe.write_text("import pandas\n")
    try:
        bad = subprocess.run(
            [ruff, "check", "--select", "TID253", str(probe)], capture_output=True, text=True, cwd=ROOT
        )
    finally:
        probe.unlink()
    assert bad.returncode != 0 and "TID253" in bad.stdout


@pytest.mark.dag_structure
def test_every_dag_has_owner_tags_docs_and_retries(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags and "airgate" in dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 40, dag_id
        assert dag.default_args.get("owner") not in (None, "", "airflow"), dag_id
        for t in dag.tasks:
            assert t.retries >= 2, f"{dag_id}.{t.task_id} retries={t.retries}"
            assert t.owner == dag.default_args["owner"]


@pytest.mark.dag_structure
def test_stages_are_chained_by_assets(dagbag) -> None:  # type: ignore[no-untyped-def]
    def outlets(dag_id: str) -> set[str]:
        return {o.uri for t in dagbag.dags[dag_id].tasks for o in getattr(t, "outlets", [])}

    def consumes(dag_id: str) -> set[str]:
        cond = dagbag.dags[dag_id].timetable.asset_condition
        return {a.uri for a in getattr(cond, "objects", [cond])}

    m = "knowledge_tracing"
    assert outlets(f"{m}__collect") == {"airgate://knowledge_tracing/raw"} == consumes(f"{m}__clean")
    assert outlets(f"{m}__clean") == {"airgate://knowledge_tracing/clean"} == consumes(f"{m}__label")
    # training follows the retrain Asset alone: the label DAG updates it until there is a champion, then drift
    # (after scoring) and decay (after labels) alarms do; new labels alone never retrain a champion
    assert outlets(f"{m}__label") == {
        "airgate://knowledge_tracing/labeled",
        "airgate://knowledge_tracing/retrain",
    }
    label = dagbag.dags[f"{m}__label"]
    assert label.get_task("request_training").upstream_task_ids == {"no_champion_yet"}
    assert outlets(f"{m}__score") == {"airgate://knowledge_tracing/retrain"}
    assert consumes(f"{m}__train") == {"airgate://knowledge_tracing/retrain"}
    # decay is checked on every new labeled version; its alarm updates the same retrain Asset
    assert consumes(f"{m}__monitor") == {"airgate://knowledge_tracing/labeled"}
    assert outlets(f"{m}__monitor") == {"airgate://knowledge_tracing/retrain"}
    assert dagbag.dags[f"{m}__score"].timetable.expression == "0 2 * * *"
    # labeling also runs on its own clock, for late grades and review answers
    assert type(dagbag.dags[f"{m}__label"].timetable).__name__ == "AssetOrTimeSchedule"
    # features are materialized once per clean version, after validation; scoring plans, scores, then swaps
    clean = dagbag.dags[f"{m}__clean"]
    assert clean.get_task("materialize_features").upstream_task_ids == {"validate_batches"}
    score = dagbag.dags[f"{m}__score"]
    assert score.get_task("score_partition").upstream_task_ids == {"plan"}
    assert score.get_task("publish").upstream_task_ids == {"plan", "score_partition"}
    assert score.get_task("monitor_drift").upstream_task_ids == {"publish"}
    collect = dagbag.dags[f"{m}__collect"]
    assert [t.task_id for t in collect.tasks] == ["wait_for_new_files", "ingest"]
    sensor = collect.get_task("wait_for_new_files")
    assert type(sensor).__name__ == "LandingZoneSensor" and sensor.deferrable and sensor.soft_fail


@pytest.mark.dag_structure
def test_a_second_spec_adds_its_dags_without_code_changes(tmp_path: Path) -> None:
    import yaml

    shutil.copy(ROOT / "include" / "specs" / "knowledge_tracing.yaml", tmp_path)
    doc = yaml.safe_load((ROOT / "include" / "specs" / "knowledge_tracing.yaml").read_text())
    doc.update(
        name="fractions_quiz",
        owner="dana",
        source={"path": "landing/fractions", "pattern": "*.csv"},
        scoring={"schedule": "30 3 * * *", "deadline_minutes": 60},  # the copied alerts need a deadline
        candidates=[{"name": "baseline", "kind": "baseline"}, {"name": "gbm", "kind": "lightgbm"}],
    )
    (tmp_path / "fractions_quiz.yaml").write_text(yaml.safe_dump(doc))
    code = (
        "import json\nfrom airflow.dag_processing.dagbag import DagBag\n"
        "b = DagBag(dag_folder='dags')\n"
        "print(json.dumps({'ids': sorted(b.dag_ids), 'errors': {k: str(v) for k, v in b.import_errors.items()},"
        " 'owner': b.dags['fractions_quiz__train'].default_args['owner']}))"
    )
    got = _subprocess_json(code, AIRGATE_SPECS_DIR=str(tmp_path))
    assert got["errors"] == {}
    assert got["ids"] == sorted(
        [f"{m}__{s}" for m in ("knowledge_tracing", "fractions_quiz") for s in STAGES]
    )
    assert got["owner"] == "dana"


@pytest.mark.dag_import
def test_a_bad_spec_surfaces_as_an_import_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken_model.yaml").write_text("name: broken_model\nowner: x\n")
    code = (
        "import json\nfrom airflow.dag_processing.dagbag import DagBag\n"
        "b = DagBag(dag_folder='dags')\nprint(json.dumps({k: str(v) for k, v in b.import_errors.items()}))"
    )
    errors = _subprocess_json(code, AIRGATE_SPECS_DIR=str(tmp_path))
    text = " ".join(errors.values())
    assert "broken_model.yaml" in text and "field 'approval'" in text and "Fix:" in text


@pytest.mark.dag_structure
def test_monitor_checks_decay_and_only_an_alarm_requests_retraining(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["knowledge_tracing__monitor"]
    assert [t.task_id for t in dag.topological_sort()] == [
        "check_decay",
        "decayed",
        "request_retraining",
        "anchor_audit",
    ]
    assert dag.get_task("anchor_audit").trigger_rule == "all_done"  # anchors whatever the verdict
    gate = dag.get_task("decayed")
    assert "ShortCircuit" in type(gate).__name__ and gate.downstream_task_ids == {"request_retraining"}
    assert [o.uri for o in dag.get_task("request_retraining").outlets] == [
        "airgate://knowledge_tracing/retrain"
    ]
    assert not dag.get_task("check_decay").outlets
    assert "0.05" in (dag.doc_md or "") and "200" in (
        dag.doc_md or ""
    )  # the spec's thresholds, for the reader


@pytest.mark.dag_structure
def test_training_also_runs_on_the_retrain_schedule_when_one_is_set(spec) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    from airgate.orchestration.builders import build_train

    def consumes(dag) -> set[str]:  # type: ignore[no-untyped-def]
        cond = dag.timetable.asset_condition
        return {a.uri for a in getattr(cond, "objects", [cond])}

    assets = {"airgate://knowledge_tracing/retrain"}
    weekly = build_train(spec)  # the shipped spec retrains weekly
    assert type(weekly.timetable).__name__ == "AssetOrTimeSchedule"
    assert isinstance(weekly.timetable, AssetOrTimeSchedule)
    assert isinstance(weekly.timetable.timetable, CronTriggerTimetable)
    assert weekly.timetable.timetable.expression == spec.monitoring.retrain_schedule == "0 3 * * 0"
    assert str(weekly.timetable.timetable.timezone) == "UTC" and consumes(weekly) == assets
    off = build_train(
        spec.model_copy(update={"monitoring": spec.monitoring.model_copy(update={"retrain_schedule": None})})
    )
    assert type(off.timetable).__name__ == "AssetTriggeredTimetable" and consumes(off) == assets


@pytest.mark.dag_structure
def test_training_maps_one_task_per_candidate(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["knowledge_tracing__train"]
    assert [t.task_id for t in dag.topological_sort()] == [
        "prepare_split",
        "train_candidate",
        "select_and_test",
        "validate",
        "register_and_request_approval",
        "await_approval",
        "confirm_champion",
    ]
    mapped = dag.get_task("train_candidate")
    assert type(mapped).__name__.endswith("MappedOperator") and mapped.pool == "airgate_training"
    from airgate.core.spec import find_spec

    assert mapped.op_kwargs_expand_input.value["candidate"] == [
        c.name for c in find_spec("knowledge_tracing").candidates
    ]


@pytest.mark.dag_structure
def test_a_kubernetes_spec_trains_candidates_as_pods(spec) -> None:  # type: ignore[no-untyped-def]
    from airgate.core.spec import Kubernetes, Resources
    from airgate.orchestration.builders import build_train

    kspec = spec.model_copy(
        update={
            "kubernetes": Kubernetes(
                image="registry.local/airgate:1", resources=Resources(cpu="2", memory="4Gi")
            )
        }
    )
    dag = build_train(kspec)
    pods = dag.get_task("train_candidate")
    assert type(pods).__name__ == "MappedOperator" and "KubernetesPodOperator" in str(pods.operator_class)
    assert pods.upstream_task_ids == {"prepare_split"}
    assert dag.get_task("select_and_test").upstream_task_ids >= {"train_candidate", "prepare_split"}


@pytest.mark.dag_structure
def test_retention_purges_beside_the_ingest_only_when_the_spec_sets_it(spec) -> None:  # type: ignore[no-untyped-def]
    from airgate.core.spec import Privacy
    from airgate.orchestration.builders import build_collect

    assert "purge_expired" not in build_collect(spec).task_ids  # the shipped spec keeps its raw data
    kept = build_collect(spec.model_copy(update={"privacy": Privacy(retention_days=90)}))
    assert "purge_expired" in kept.task_ids
    assert not kept.get_task("purge_expired").upstream_task_ids  # a sensor that times out never holds it back
