"""Training candidates as Kubernetes pods: the spec's ``kubernetes:`` block turned into KubernetesPodOperator input.

Imported at DAG-parse time by the DAG factory, so the module level imports only the spec. The kubernetes client
(~0.6 s) and the cncf-kubernetes provider (~1 s more) are imported inside the functions that need them; a model
without a ``kubernetes:`` block never pays for them.

Every candidate becomes one mapped task instance of a single ``KubernetesPodOperator.partial(...)`` task:
what all pods share (image, namespace, service account, the env Secret, XCom, cleanup) is in the partial
arguments, what differs (name, arguments, resources, GPU scheduling) is one dict per candidate for
``expand_kwargs``. The pod runs ``python -m airgate.cli train-candidate``; its JSON result comes back as the
mapped instance's XCom through the operator's sidecar.

The pod arguments carry the training run id as a Jinja template that derives it from the pod task's own dag run
(``airgate.core.run_identity.training_run_id``), not from the upstream task's XCom, which an op user can rewrite;
the pod reads who trained and which labeled version from the run's identity record. Literal ``expand_kwargs``
values are rendered like any template field of the operator.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airgate.core.spec import Candidate, Kubernetes, ModelSpec, Resources

if TYPE_CHECKING:
    from airflow.sdk.definitions.mappedoperator import MappedOperator
    from kubernetes.client import V1Pod, V1ResourceRequirements, V1Toleration

CLI = ["python", "-m", "airgate.cli"]
TRAIN_COMMAND = "train-candidate"
TASK_ID = "train_candidate"
POOL = "airgate_training"
CANDIDATE_LABEL = "airgate/candidate"
MODEL_LABEL = "airgate/model"
# The mapped instances are listed by candidate name in the UI instead of 0, 1, 2: the label is rendered per pod.
MAP_INDEX_TEMPLATE = "{{ task.labels['" + CANDIDATE_LABEL + "'] }}"
# Short enough that the provider's 8-character random suffix still fits a 63-character pod name.
_POD_NAME_MAX = 54


def kubernetes_of(spec: ModelSpec) -> Kubernetes:
    """The spec's ``kubernetes:`` block; a clear error instead of an AttributeError on None deep in a DAG file."""
    if spec.kubernetes is None:
        raise ValueError(
            f"model spec {spec.name!r} has no 'kubernetes:' block: its candidates train on the "
            "Airflow worker, not in pods"
        )
    return spec.kubernetes


def _candidate(spec: ModelSpec, candidate: Candidate | str) -> Candidate:
    if isinstance(candidate, Candidate):
        return candidate
    for c in spec.candidates:
        if c.name == candidate:
            return c
    raise ValueError(f"{candidate!r} is not a candidate of {spec.name}: {[c.name for c in spec.candidates]}")


def candidate_resources(spec: ModelSpec, candidate: Candidate | str) -> Resources:
    """The candidate's own ``resources`` when it has them (a DKT on a GPU, a baseline on a sliver of a core),
    else the ``kubernetes.resources`` default. The override replaces the default whole, never field by field,
    so what the YAML shows for a candidate is exactly what its pod gets."""
    cand = _candidate(spec, candidate)
    return cand.resources if cand.resources is not None else kubernetes_of(spec).resources


def container_resources(res: Resources, gpu_resource: str = "nvidia.com/gpu") -> V1ResourceRequirements:
    """Requests equal to limits, so a training pod gets Guaranteed QoS: it is the last to be evicted, and its
    timings (a tuning objective) are not disturbed by neighbours bursting into its CPU. Extended resources such
    as GPUs cannot be overcommitted, so Kubernetes requires their request to equal the limit anyway; a CPU-only
    candidate names no GPU at all rather than ``0``, which keeps it off clusters' GPU quota."""
    from kubernetes.client import V1ResourceRequirements

    amounts: dict[str, str] = {"cpu": res.cpu, "memory": res.memory}
    if res.gpu > 0:
        amounts[gpu_resource] = str(res.gpu)
    return V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts))


def gpu_tolerations(res: Resources, gpu_resource: str = "nvidia.com/gpu") -> list[V1Toleration]:
    """GPU node pools are tainted ``<gpu_resource>:NoSchedule`` (GKE, EKS and AKS do it by default) so that CPU
    work stays off expensive nodes; a GPU pod must tolerate that taint. ``Exists`` matches any taint value."""
    if res.gpu <= 0:
        return []
    from kubernetes.client import V1Toleration

    return [V1Toleration(key=gpu_resource, operator="Exists", effect="NoSchedule")]


def run_id_template(spec: ModelSpec) -> str:
    """Jinja that derives the training run id from the pod task's own ``run_id`` when it renders: the same
    formula as ``airgate.core.run_identity.training_run_id`` (a test keeps the two equal)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", spec.name):  # it is spliced into a Jinja string literal
        raise ValueError(f"model name {spec.name!r} cannot be templated")
    return "{{ ('tr-" + spec.name + "-' ~ run_id)[:80] }}"


def candidate_arguments(spec: ModelSpec, candidate: Candidate | str, training_run_id: str) -> list[str]:
    """Arguments after ``python -m airgate.cli``. ``--xcom`` makes the result land where the sidecar reads it."""
    cand = _candidate(spec, candidate)
    return [
        TRAIN_COMMAND,
        "--model",
        spec.name,
        "--training-run-id",
        training_run_id,
        "--candidate",
        cand.name,
        "--xcom",
    ]


def pod_name(spec: ModelSpec, candidate: Candidate | str) -> str:
    """A DNS-1123 name that says which model and candidate a pod trains, for ``kubectl get pods``; the provider
    appends a random suffix, so retries and concurrent runs never collide."""
    cand = _candidate(spec, candidate)
    name = re.sub(r"[^a-z0-9-]+", "-", f"train-{spec.name}-{cand.name}".lower())
    return name[:_POD_NAME_MAX].strip("-")


def pod_labels(spec: ModelSpec, candidate: Candidate | str) -> dict[str, str]:
    """Labels to select every airgate pod, a model's pods, or one candidate's pods (NetworkPolicies, quotas,
    ``kubectl logs -l``)."""
    cand = _candidate(spec, candidate)
    return {"app": "airgate", MODEL_LABEL: spec.name, CANDIDATE_LABEL: cand.name}


def candidate_pod_kwargs(spec: ModelSpec, training_run_id: str | None = None) -> list[dict[str, Any]]:
    """One dict per candidate (the baseline too: it is cheap, and one code path for all keeps the DAG uniform)
    for ``expand_kwargs``. Every dict has the same keys, so each mapped instance is built the same way.

    ``training_run_id`` is for a run already known (``build_pod``); by default the pod arguments carry the Jinja
    that derives it from the task's own dag run at run time.
    """
    kube = kubernetes_of(spec)
    run_id = training_run_id if training_run_id is not None else run_id_template(spec)
    out: list[dict[str, Any]] = []
    for cand in spec.candidates:
        res = candidate_resources(spec, cand)
        out.append(
            {
                "name": pod_name(spec, cand),
                "labels": pod_labels(spec, cand),
                "arguments": candidate_arguments(spec, cand, run_id),
                "container_resources": container_resources(res, kube.gpu_resource),
                "node_selector": {},
                "tolerations": gpu_tolerations(res, kube.gpu_resource),
            }
        )
    return out


def shared_pod_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """What every candidate's pod has in common: the ``partial()`` arguments."""
    from kubernetes.client import V1EnvFromSource, V1SecretEnvSource

    kube = kubernetes_of(spec)
    env_from = (
        [V1EnvFromSource(secret_ref=V1SecretEnvSource(name=kube.env_secret))] if kube.env_secret else []
    )
    return {
        "image": kube.image,
        "namespace": kube.namespace,
        "service_account_name": kube.service_account,
        "cmds": list(CLI),
        "env_from": env_from,
        # Logs stream to the task log while the pod trains, not in one block at the end.
        "env_vars": {"PYTHONUNBUFFERED": "1"},
        "do_xcom_push": True,
        "get_logs": True,
        "log_events_on_failure": True,
        "on_finish_action": "delete_pod",
        "startup_timeout_seconds": kube.startup_timeout_s,
        "random_name_suffix": True,
    }


def candidate_pod_operator(
    spec: ModelSpec, upstream_task_id: str, task_id: str = TASK_ID, **operator_kwargs: Any
) -> MappedOperator:
    """The mapped training task; call it inside the training DAG's context, after ``upstream_task_id`` exists.

    The dependency on ``upstream_task_id`` is set here: without the edge the pods could start before that task
    has prepared the split and recorded the run's identity. The task shares the
    ``airgate_training`` pool with local training, so one burst of runs cannot start a cluster's worth of pods.
    ``operator_kwargs`` reach ``partial()`` unchanged, for what the spec does not
    describe (``volumes``/``volume_mounts`` when the storage root is a shared ``file://`` folder rather than an
    object store named by ``AIRGATE_STORAGE_URL`` in the env Secret, ``deferrable``, ``kubernetes_conn_id``,
    ``image_pull_secrets``); they win over the defaults here.
    """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    partial_kwargs: dict[str, Any] = {
        "pool": POOL,
        "map_index_template": MAP_INDEX_TEMPLATE,
        **shared_pod_kwargs(spec),
        **operator_kwargs,
    }
    mapped = KubernetesPodOperator.partial(task_id=task_id, **partial_kwargs).expand_kwargs(
        candidate_pod_kwargs(spec)
    )
    dag = mapped.dag
    if dag is not None:
        if not dag.has_task(upstream_task_id):
            raise ValueError(
                f"{dag.dag_id}: the pods run after task {upstream_task_id!r}, "
                f"which is not in the DAG; create it before calling candidate_pod_operator"
            )
        mapped.set_upstream(dag.get_task(upstream_task_id))
    return mapped


def build_pod(
    spec: ModelSpec,
    candidate: Candidate | str,
    training_run_id: str,
    kubernetes_conn_id: str | None = None,
    **operator_kwargs: Any,
) -> V1Pod:
    """The exact pod one candidate would run as, built by the provider itself, without a cluster.

    An unmapped operator gets the same shared and per-candidate arguments as the mapped task, with a concrete
    run id instead of the template, and builds its pod request with ``dry_run=True`` (which skips the only
    cluster call, the in-cluster check). ``kubernetes_conn_id=None`` skips the connection lookup too, so the XCom
    sidecar gets the provider's default image; pass a connection id to see the sidecar it configures.
    """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    cand = _candidate(spec, candidate)
    per_candidate = next(
        k
        for c, k in zip(
            spec.candidates, candidate_pod_kwargs(spec, training_run_id=training_run_id), strict=True
        )
        if c.name == cand.name
    )
    op = KubernetesPodOperator(
        task_id=TASK_ID,
        kubernetes_conn_id=kubernetes_conn_id,
        **{**shared_pod_kwargs(spec), **operator_kwargs, **per_candidate},
    )
    return op.build_pod_request_obj(dry_run=True)


# ------------------------------------------------------------------------------------------------ scoring pods

SCORE_COMMAND = "score-partition"
SCORE_TASK_ID = "score_partition"
SHARD_LABEL = "airgate/shard"
SCORE_MAP_INDEX_TEMPLATE = "{{ 'shard ' ~ task.labels['" + SHARD_LABEL + "'] }}"


def scoring_resources(spec: ModelSpec) -> Resources:
    """``scoring.resources`` when set, else the ``kubernetes.resources`` default (replaced whole, as for
    candidates)."""
    return spec.scoring.resources if spec.scoring.resources is not None else kubernetes_of(spec).resources


def score_arguments(spec: ModelSpec, scoring_run_id: str, shard: int) -> list[str]:
    return [
        SCORE_COMMAND,
        "--model",
        spec.name,
        "--scoring-run-id",
        scoring_run_id,
        "--shard",
        str(shard),
        "--xcom",
    ]


def score_pod_kwargs(spec: ModelSpec, scoring_run_id: str, shard: int) -> dict[str, Any]:
    """What differs between two shards' pods: plain JSON, because it travels as the plan task's XCom (the run id
    only exists once the plan has run, so the mapping is over that XCom, not over literals)."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"score-{spec.name}".lower())[: _POD_NAME_MAX - 5].strip("-")
    return {
        "name": f"{name}-{shard:03d}",
        "labels": {"app": "airgate", MODEL_LABEL: spec.name, SHARD_LABEL: str(shard)},
        "arguments": score_arguments(spec, scoring_run_id, shard),
    }


def with_pods(spec: ModelSpec, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The plan's parts, each with its pod's arguments under ``pod``, where ``pod_of_part`` reads them back."""
    return [{**part, "pod": score_pod_kwargs(spec, part["scoring_run_id"], part["shard"])} for part in parts]


def pod_of_part(part: dict[str, Any]) -> dict[str, Any]:
    """The pod arguments of one entry of the score DAG's plan (an ``XComArg.map`` function: runs in the worker)."""
    return dict(part["pod"])


def score_shared_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """What every scoring pod shares: the image and environment of the training pods, the scoring resources."""
    res = scoring_resources(spec)
    kube = kubernetes_of(spec)
    return {
        **shared_pod_kwargs(spec),
        "container_resources": container_resources(res, kube.gpu_resource),
        "tolerations": gpu_tolerations(res, kube.gpu_resource),
    }


def score_pod_operator(
    spec: ModelSpec, pod_kwargs: Any, task_id: str = SCORE_TASK_ID, **operator_kwargs: Any
) -> MappedOperator:
    """One pod per shard, mapped over the plan task's ``pods`` XCom (``score_pod_kwargs`` per shard). The XComArg
    makes the plan task upstream by itself. ``operator_kwargs`` win over the defaults, as for candidates."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    partial_kwargs: dict[str, Any] = {
        "map_index_template": SCORE_MAP_INDEX_TEMPLATE,
        **score_shared_kwargs(spec),
        **operator_kwargs,
    }
    return KubernetesPodOperator.partial(task_id=task_id, **partial_kwargs).expand_kwargs(pod_kwargs)


def build_score_pod(
    spec: ModelSpec,
    scoring_run_id: str,
    shard: int,
    kubernetes_conn_id: str | None = None,
    **operator_kwargs: Any,
) -> V1Pod:
    """The exact pod one shard would run as, built by the provider without a cluster (see ``build_pod``)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    op = KubernetesPodOperator(
        task_id=SCORE_TASK_ID,
        kubernetes_conn_id=kubernetes_conn_id,
        **{**score_shared_kwargs(spec), **operator_kwargs, **score_pod_kwargs(spec, scoring_run_id, shard)},
    )
    return op.build_pod_request_obj(dry_run=True)
