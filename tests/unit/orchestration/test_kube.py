"""Training in Kubernetes pods, checked without a cluster: the pods the provider would create are valid Kubernetes
objects carrying what the spec says, the DAG maps one pod per candidate, and the pod's CLI hands its result to XCom.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from airgate.core.spec import Kubernetes, ModelSpec, Resources, SpecError, load_spec
from airgate.orchestration import cli, kube
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
SPEC = ROOT / "include" / "specs" / "knowledge_tracing.yaml"
IMAGE = "registry.example.com/airgate:1.2.3"
GPU = Resources(cpu="4", memory="16Gi", gpu=1)


@pytest.fixture
def kspec(spec: ModelSpec) -> ModelSpec:
    """The shipped spec with a ``kubernetes:`` block and three candidates: the baseline and LightGBM without
    resources of their own, and a copy of LightGBM that asks for a GPU."""
    by_kind = {c.kind: c.model_copy(update={"resources": None}) for c in spec.candidates}
    base, lgbm = by_kind["baseline"], by_kind["lightgbm"].model_copy(update={"name": "lightgbm"})
    gpu_cand = lgbm.model_copy(update={"name": "lightgbm_gpu", "resources": GPU})
    return spec.model_copy(
        update={
            "kubernetes": Kubernetes(
                image=IMAGE,
                namespace="ml-train",
                service_account="airgate-trainer",
                env_secret="airgate-env",
                resources=Resources(cpu="2", memory="4Gi"),
                startup_timeout_s=900,
            ),
            "candidates": [base, lgbm, gpu_cand],
        }
    )


def _roundtrip(pod: Any) -> tuple[dict[str, Any], Any]:
    """Serialise as the API server would receive it, and read it back through the client's own models: a field
    of the wrong type or name would not survive the trip."""
    from kubernetes.client import ApiClient, V1Pod

    api = ApiClient()
    data = api.sanitize_for_serialization(pod)
    back = api._ApiClient__deserialize(json.loads(json.dumps(data)), "V1Pod")  # type: ignore[attr-defined]
    assert isinstance(back, V1Pod)
    # Compared as JSON, not as objects: an empty {} the provider sets becomes a model with every field None.
    assert api.sanitize_for_serialization(back) == data
    return data, back


# ----------------------------------------------------------------------------------------------- resources


def test_a_candidate_override_beats_the_default_and_the_rest_get_the_default(kspec: ModelSpec) -> None:
    assert kube.candidate_resources(kspec, "lightgbm_gpu") == GPU
    assert kube.candidate_resources(kspec, "lightgbm") == Resources(cpu="2", memory="4Gi")
    assert kube.candidate_resources(kspec, kspec.candidates[0]) == kspec.kubernetes.resources  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not a candidate"):
        kube.candidate_resources(kspec, "xgboost")


def test_requests_equal_limits_and_a_gpu_appears_only_when_asked_for() -> None:
    cpu = kube.container_resources(Resources(cpu="500m", memory="1Gi"))
    assert cpu.requests == cpu.limits == {"cpu": "500m", "memory": "1Gi"}
    gpu = kube.container_resources(Resources(cpu="4", memory="16Gi", gpu=2), "amd.com/gpu")
    assert gpu.requests == gpu.limits == {"cpu": "4", "memory": "16Gi", "amd.com/gpu": "2"}
    assert gpu.requests is not gpu.limits  # rendering one in place must not change the other
    assert kube.gpu_tolerations(Resources()) == []


def test_pod_names_are_dns_labels_with_room_for_the_random_suffix(kspec: ModelSpec) -> None:
    import re

    long = kspec.model_copy(
        update={
            "name": "m" * 63,
            "candidates": [
                c.model_copy(update={"name": f"c_{'x' * 60}"}) if c.kind != "baseline" else c
                for c in kspec.candidates
            ],
        }
    )
    for cand in long.candidates:
        name = kube.pod_name(long, cand)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) + 9 <= 63, name


def test_a_spec_without_kubernetes_says_so(spec: ModelSpec) -> None:
    assert spec.kubernetes is None
    with pytest.raises(ValueError, match="no 'kubernetes:' block"):
        kube.candidate_pod_kwargs(spec)


# ------------------------------------------------------------------------------------------------------ pods


@pytest.mark.parametrize("candidate", ["baseline", "lightgbm", "lightgbm_gpu"])
def test_each_candidate_pod_is_a_valid_pod_with_what_the_spec_says(kspec: ModelSpec, candidate: str) -> None:
    pod = kube.build_pod(kspec, candidate, "tr-knowledge_tracing-manual__1")
    data, back = _roundtrip(pod)
    assert back.spec.containers[0].resources.limits == pod.spec.containers[0].resources.limits

    assert data["apiVersion"] == "v1" and data["kind"] == "Pod"
    meta = data["metadata"]
    assert meta["namespace"] == "ml-train"
    assert meta["name"].startswith(f"train-knowledge-tracing-{candidate.replace('_', '-')}-")
    assert len(meta["name"]) <= 63
    assert {
        "app": "airgate",
        "airgate/model": "knowledge_tracing",
        "airgate/candidate": candidate,
    }.items() <= meta["labels"].items()

    spec_ = data["spec"]
    assert spec_["serviceAccountName"] == "airgate-trainer"
    assert spec_["restartPolicy"] == "Never"
    main, *sidecars = spec_["containers"]
    assert [c["name"] for c in sidecars] == ["airflow-xcom-sidecar"]  # do_xcom_push reads the pod's result
    assert main["name"] == "base" and main["image"] == IMAGE
    assert main["command"] == ["python", "-m", "airgate.cli"]
    assert main["args"] == [
        "train-candidate",
        "--model",
        "knowledge_tracing",
        "--training-run-id",
        "tr-knowledge_tracing-manual__1",
        "--candidate",
        candidate,
        "--xcom",
    ]
    assert main["envFrom"] == [{"secretRef": {"name": "airgate-env"}}]
    assert {"name": "PYTHONUNBUFFERED", "value": "1"} in main["env"]
    assert {"name": "xcom", "mountPath": "/airflow/xcom"} in main["volumeMounts"]

    res = main["resources"]
    assert res["requests"] == res["limits"]
    if candidate == "lightgbm_gpu":
        assert res["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
        assert spec_["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    else:
        assert res["limits"] == {"cpu": "2", "memory": "4Gi"}
        assert "nvidia.com/gpu" not in json.dumps(spec_)
        assert not spec_.get("tolerations")


def test_a_pod_without_env_secret_or_service_account_leaves_them_out(kspec: ModelSpec) -> None:
    bare = kspec.model_copy(update={"kubernetes": Kubernetes(image=IMAGE)})
    data, _ = _roundtrip(kube.build_pod(bare, "lightgbm", "tr-1"))
    main = data["spec"]["containers"][0]
    assert not main.get("envFrom") and "serviceAccountName" not in data["spec"]
    assert data["metadata"]["namespace"] == "airgate"
    assert main["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}


def test_extra_operator_arguments_reach_the_pod(kspec: ModelSpec) -> None:
    """What the spec does not describe, such as the shared AIRGATE_HOME volume the split lives on."""
    from kubernetes.client import V1PersistentVolumeClaimVolumeSource, V1Volume, V1VolumeMount

    home = V1Volume(
        name="airgate-home",
        persistent_volume_claim=V1PersistentVolumeClaimVolumeSource(claim_name="airgate-home"),
    )
    pod = kube.build_pod(
        kspec,
        "lightgbm",
        "tr-1",
        volumes=[home],
        volume_mounts=[V1VolumeMount(name="airgate-home", mount_path="/usr/local/airflow/.airgate")],
    )
    data, _ = _roundtrip(pod)
    assert {"name": "airgate-home", "persistentVolumeClaim": {"claimName": "airgate-home"}} in data["spec"][
        "volumes"
    ]
    assert {"name": "airgate-home", "mountPath": "/usr/local/airflow/.airgate"} in data["spec"]["containers"][
        0
    ]["volumeMounts"]


# ------------------------------------------------------------------------------------------------------- DAG


def _train_dag(kspec: ModelSpec):  # type: ignore[no-untyped-def]
    from airflow.sdk import DAG, task

    with DAG(
        "knowledge_tracing__train_k8s",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        default_args={"owner": "trainer", "retries": 2},
    ) as dag:

        @task
        def prepare_split() -> dict[str, Any]:
            return {"training_run_id": "tr-1"}

        prepare_split()
        pods = kube.candidate_pod_operator(kspec, upstream_task_id="prepare_split")
    return dag, pods


@pytest.mark.dag_structure
def test_the_training_task_maps_one_pod_per_candidate(kspec: ModelSpec) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    dag, pods = _train_dag(kspec)
    assert isinstance(pods, MappedOperator) and pods.operator_class is KubernetesPodOperator
    assert dag.get_task("train_candidate") is pods
    assert pods.upstream_task_ids == {"prepare_split"}
    assert pods.retries == 2 and pods.owner == "trainer" and pods.pool == "airgate_training"

    expanded = pods.expand_input.value
    assert isinstance(expanded, list) and len(expanded) == len(kspec.candidates) == 3
    assert [k["labels"]["airgate/candidate"] for k in expanded] == [c.name for c in kspec.candidates]
    for cand, kwargs in zip(kspec.candidates, expanded, strict=True):
        args = kwargs["arguments"]
        assert args[:3] == ["train-candidate", "--model", "knowledge_tracing"]
        assert args[args.index("--candidate") + 1] == cand.name
        # Derived from the pod task's own run, never pulled from prepare_split's (rewritable) XCom.
        assert args[args.index("--training-run-id") + 1] == "{{ ('tr-knowledge_tracing-' ~ run_id)[:80] }}"

    shared = pods.partial_kwargs
    assert shared["cmds"] == ["python", "-m", "airgate.cli"] and shared["image"] == IMAGE
    assert shared["do_xcom_push"] is True and shared["on_finish_action"] == "delete_pod"
    assert shared["startup_timeout_seconds"] == 900 and shared["service_account_name"] == "airgate-trainer"
    # Nothing is both shared and per candidate: Airflow rejects a key given to partial() and expand_kwargs().
    assert not set(shared) & set(expanded[0])


@pytest.mark.dag_structure
def test_the_upstream_task_must_exist_before_the_pods(kspec: ModelSpec) -> None:
    from airflow.sdk import DAG

    with DAG("no_upstream", schedule=None, start_date=datetime(2026, 1, 1)):
        with pytest.raises(ValueError, match="'prepare_split', which is not in the DAG"):
            kube.candidate_pod_operator(kspec, upstream_task_id="prepare_split")


@pytest.mark.dag_structure
def test_a_mapped_instance_renders_its_run_id_and_candidate_name(kspec: ModelSpec) -> None:
    """What the worker does before starting the pod: unmap one instance and render its templates."""
    import jinja2

    _, pods = _train_dag(kspec)
    from airgate.core.run_identity import training_run_id

    # A rewritten prepare_split XCom changes nothing: the run id comes from the task's own dag run.
    ti = types.SimpleNamespace(xcom_pull=lambda task_ids: {"training_run_id": "tr-someone-elses-run"})
    task = pods.unmap(pods.expand_input.value[2])
    run_id = "manual__2026-01-01T00:00:00+00:00" + "x" * 80
    context: dict[str, Any] = {"ti": ti, "run_id": run_id}
    task.render_template_fields(context, jinja2.Environment())  # type: ignore[arg-type]
    rendered = task.arguments[task.arguments.index("--training-run-id") + 1]
    assert rendered == training_run_id(kspec.name, run_id) and len(rendered) == 80
    assert task.container_resources.limits["nvidia.com/gpu"] == "1"
    shown = jinja2.Environment().from_string(pods.map_index_template or "").render(task=task)
    assert shown == "lightgbm_gpu"


@pytest.mark.dag_structure
def test_the_dag_with_pods_serialises_for_the_scheduler(kspec: ModelSpec) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    dag, _ = _train_dag(kspec)
    data = DagSerialization.to_dict(dag)
    back = DagSerialization.from_dict(data)
    assert back.get_task("train_candidate").task_type == "KubernetesPodOperator"
    assert json.dumps(data).count("--candidate") == len(kspec.candidates)


@pytest.mark.dag_import
def test_importing_kube_at_parse_time_loads_no_kubernetes_client() -> None:
    code = (
        "import json, sys\nimport airgate.orchestration.kube\n"
        "print(json.dumps([m for m in ('kubernetes', 'airflow.providers.cncf.kubernetes', 'pandas') "
        "if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


# ------------------------------------------------------------------------------------------------------- CLI


def test_cli_help_exits_cleanly() -> None:
    for argv in (["--help"], ["train-candidate", "--help"]):
        out = subprocess.run(
            [sys.executable, "-m", "airgate.cli", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=os.environ.copy(),
        )
        assert out.returncode == 0, out.stderr
    assert "--training-run-id" in out.stdout and "--xcom" in out.stdout


@pytest.fixture
def fake_train(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """A stand-in airgate.model.training: the CLI's contract is the call and the JSON, not the training itself."""
    import numpy as np

    calls: list[tuple[str, str, str]] = []

    def train_candidate_from_env(model: str, training_run_id: str, candidate: str) -> dict[str, Any]:
        calls.append((model, training_run_id, candidate))
        return {"candidate": candidate, "valid": {"auc": np.float64(0.75)}, "n_trials": 3}

    fake = types.ModuleType("airgate.model.training")
    fake.train_candidate_from_env = train_candidate_from_env  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "airgate.model.training", fake)
    return calls


def test_train_candidate_writes_its_result_for_xcom(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_train: list[tuple[str, str, str]],
) -> None:
    target = tmp_path / "airflow" / "xcom" / "return.json"
    monkeypatch.setenv(cli.XCOM_PATH_ENV, str(target))
    rc = cli.main(
        [
            "train-candidate",
            "--model",
            "knowledge_tracing",
            "--training-run-id",
            "tr-7",
            "--candidate",
            "lightgbm",
            "--xcom",
        ]
    )
    assert rc == 0
    assert fake_train == [("knowledge_tracing", "tr-7", "lightgbm")]
    expected = {"candidate": "lightgbm", "valid": {"auc": 0.75}, "n_trials": 3}
    assert json.loads(target.read_text()) == expected
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == expected
    assert list(target.parent.iterdir()) == [target]  # no temp file left beside it


def test_the_xcom_file_is_written_when_the_sidecar_volume_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_train: list[tuple[str, str, str]]
) -> None:
    mounted = tmp_path / "mounted" / "return.json"
    mounted.parent.mkdir()
    monkeypatch.setenv(cli.XCOM_PATH_ENV, str(mounted))
    cli.main(["train-candidate", "--model", "m", "--training-run-id", "r", "--candidate", "c"])
    assert json.loads(mounted.read_text())["candidate"] == "c"

    absent = tmp_path / "absent" / "return.json"
    monkeypatch.setenv(cli.XCOM_PATH_ENV, str(absent))
    cli.main(["train-candidate", "--model", "m", "--training-run-id", "r", "--candidate", "c"])
    assert not absent.parent.exists()  # a run from a shell leaves nothing behind


def test_cli_rejects_a_missing_id() -> None:
    with pytest.raises(SystemExit) as err:
        cli.main(["train-candidate", "--model", "m", "--candidate", "c"])
    assert err.value.code == 2


# ------------------------------------------------------------------------------------------------------ spec


def _write(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(SPEC.read_text())
    doc["kubernetes"] = {"image": IMAGE, "resources": {"cpu": "2", "memory": "4Gi"}}
    mutate(doc)
    path = tmp_path / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_kubernetes_block_in_yaml_loads(tmp_path: Path) -> None:
    path = _write(
        tmp_path, lambda d: d["candidates"][1].update(resources={"cpu": "500m", "memory": "1.5Gi", "gpu": 1})
    )
    loaded = load_spec(path)
    assert loaded.kubernetes is not None and loaded.kubernetes.image == IMAGE
    assert kube.candidate_resources(loaded, "lightgbm") == Resources(cpu="500m", memory="1.5Gi", gpu=1)
    assert kube.candidate_resources(loaded, "baseline") == Resources(cpu="2", memory="4Gi")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["kubernetes"]["resources"].update(cpu="two"), "kubernetes.resources.cpu"),
        (lambda d: d["kubernetes"]["resources"].update(cpu="-1"), "kubernetes.resources.cpu"),
        (lambda d: d["kubernetes"]["resources"].update(memory="4GB"), "kubernetes.resources.memory"),
        (lambda d: d["candidates"][1].update(resources={"memory": "lots"}), "candidates[1].resources.memory"),
        (lambda d: d["candidates"][1].update(resources={"gpu": -1}), "candidates[1].resources.gpu"),
        (lambda d: d["kubernetes"].update(namespace="ML_Train"), "kubernetes.namespace"),
        (lambda d: d["kubernetes"].pop("image"), "kubernetes.image"),
    ],
)
def test_bad_pod_settings_are_rejected_naming_the_field(tmp_path: Path, mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, mutate)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    msg = str(err.value)
    assert str(path) in msg and f"field '{field}'" in msg and "Fix:" in msg


# ------------------------------------------------------------------------------------------------ scoring pods


@pytest.fixture
def sspec(kspec: ModelSpec) -> ModelSpec:
    """Scoring in pods, 3 shards, with resources of its own."""
    return kspec.model_copy(
        update={
            "scoring": kspec.scoring.model_copy(
                update={"pods": True, "partitions": 3, "resources": Resources(cpu="1", memory="3Gi")}
            )
        }
    )


@pytest.mark.parametrize("shard", [0, 2])
def test_each_scoring_pod_is_a_valid_pod_for_its_shard(sspec: ModelSpec, shard: int) -> None:
    data, _ = _roundtrip(kube.build_score_pod(sspec, "sr-20260903-abc", shard))
    meta, spec_ = data["metadata"], data["spec"]
    assert meta["namespace"] == "ml-train" and len(meta["name"]) <= 63
    assert meta["name"].startswith(f"score-knowledge-tracing-{shard:03d}-")
    assert {
        "app": "airgate",
        "airgate/model": "knowledge_tracing",
        "airgate/shard": str(shard),
    }.items() <= meta["labels"].items()
    main, *sidecars = spec_["containers"]
    assert [c["name"] for c in sidecars] == ["airflow-xcom-sidecar"]
    assert main["image"] == IMAGE and main["command"] == ["python", "-m", "airgate.cli"]
    assert main["args"] == [
        "score-partition",
        "--model",
        "knowledge_tracing",
        "--scoring-run-id",
        "sr-20260903-abc",
        "--shard",
        str(shard),
        "--xcom",
    ]
    assert main["envFrom"] == [{"secretRef": {"name": "airgate-env"}}]
    assert main["resources"]["requests"] == main["resources"]["limits"] == {"cpu": "1", "memory": "3Gi"}


def test_scoring_pods_fall_back_to_the_kubernetes_resources(sspec: ModelSpec) -> None:
    plain = sspec.model_copy(update={"scoring": sspec.scoring.model_copy(update={"resources": None})})
    data, _ = _roundtrip(kube.build_score_pod(plain, "sr-1", 0))
    assert data["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}


def test_scoring_in_pods_needs_a_kubernetes_block(tmp_path: Path) -> None:
    raw = yaml.safe_load(SPEC.read_text())
    raw.pop("kubernetes", None)
    raw.setdefault("scoring", {})["pods"] = True
    path = tmp_path / "knowledge_tracing.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match="scoring.pods needs a 'kubernetes:' block"):
        load_spec(path)


@pytest.mark.dag_structure
def test_the_score_dag_maps_one_pod_per_planned_shard(sspec: ModelSpec) -> None:
    """The shards exist only once ``plan`` has run, so the pods map over its XCom; each renders its shard."""
    import jinja2
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk.definitions.mappedoperator import MappedOperator
    from airflow.serialization.serialized_objects import DagSerialization

    from airgate.orchestration.builders import build_score

    dag = build_score(sspec)
    pods = dag.get_task("score_partition")
    assert isinstance(pods, MappedOperator) and pods.operator_class is KubernetesPodOperator
    assert pods.upstream_task_ids == {"plan"} and pods.downstream_task_ids == {"publish"}
    assert dag.get_task("publish").upstream_task_ids == {"plan", "score_partition"}
    shared = pods.partial_kwargs
    assert shared["image"] == IMAGE and shared["do_xcom_push"] is True
    assert shared["container_resources"].limits == {"cpu": "1", "memory": "3Gi"}

    # what plan returns for shard 1, through the map function, unmapped and rendered as the worker does
    part: dict[str, Any] = {
        "scoring_run_id": "sr-9",
        "shard": 1,
        "pod": kube.score_pod_kwargs(sspec, "sr-9", 1),
    }
    task = pods.unmap(kube.pod_of_part(part))
    assert isinstance(task, KubernetesPodOperator)
    assert task.arguments[task.arguments.index("--shard") + 1] == "1"
    assert jinja2.Environment().from_string(pods.map_index_template or "").render(task=task) == "shard 1"
    assert not set(shared) & set(part["pod"])  # nothing both shared and per pod

    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert back.get_task("score_partition").task_type == "KubernetesPodOperator"


def test_score_partition_cli_hands_its_result_to_xcom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str, int]] = []

    def score_shard_from_env(model: str, scoring_run_id: str, shard: int) -> dict[str, Any]:
        calls.append((model, scoring_run_id, shard))
        return {"scoring_run_id": scoring_run_id, "shard": shard, "rows": 1234}

    fake = types.ModuleType("airgate.serving.scoring")
    fake.score_shard_from_env = score_shard_from_env  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "airgate.serving.scoring", fake)
    target = tmp_path / "xcom" / "return.json"
    monkeypatch.setenv(cli.XCOM_PATH_ENV, str(target))
    assert (
        cli.main(
            [
                "score-partition",
                "--model",
                "knowledge_tracing",
                "--scoring-run-id",
                "sr-9",
                "--shard",
                "2",
                "--xcom",
            ]
        )
        == 0
    )
    assert calls == [("knowledge_tracing", "sr-9", 2)]
    assert json.loads(target.read_text()) == {"rows": 1234, "scoring_run_id": "sr-9", "shard": 2}
