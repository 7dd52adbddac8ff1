"""The project's own files: pinned requirements, a parseable Dockerfile, settings that match what DAGs use."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def test_requirements_are_pinned_exactly() -> None:
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln]
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][\w.+]*", r) for r in reqs), reqs
    names = {r.split("==")[0].split("[")[0].lower() for r in reqs}
    assert {
        "apache-airflow",
        "apache-airflow-providers-standard",
        "apache-airflow-providers-cncf-kubernetes",
        "great-expectations",
        "evidently",
        "mlflow",
        "lightgbm",
        "torch",
        "optuna",
        "sqlalchemy",
        "psycopg",
    } <= names
    assert "apache-airflow==3.3.2" in reqs and "torch==2.13.0" in reqs


def test_dockerfile_builds_from_astro_runtime_3_3() -> None:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    instructions = [i["instruction"] for i in parser.structure if i["instruction"] != "COMMENT"]
    assert instructions[0] == "FROM" and parser.baseimage.startswith("astrocrpublic.azurecr.io/runtime:3.3")
    assert set(instructions) <= {"FROM", "ENV", "RUN", "COPY", "ARG", "USER", "LABEL", "WORKDIR"}
    assert "PYTHONPATH" in parser.envs


def test_airflow_settings_define_what_the_dags_use() -> None:
    doc = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
    # The stores are deploy-time environment settings, not connections an op user could repoint.
    assert not {c["conn_id"] for c in doc.get("connections") or []} & {"airgate_warehouse", "airgate_mlflow"}
    makefile = (ROOT / "Makefile").read_text()
    assert all(
        f"export {s} ?=" in makefile
        for s in ("AIRGATE_WAREHOUSE_URL", "AIRGATE_MLFLOW_URI", "AIRGATE_MLFLOW_ARTIFACTS")
    )
    pools = {p["pool_name"] for p in doc["pools"]}
    # the DAG code: builders.py and the per-DAG modules under dags/, plus kube.py; a pool is named either inline
    # (pool="...") or through a module constant (TRAINING_POOL = "...", POOL = "...")
    dag_code = "\n".join(
        p.read_text() for p in sorted((ROOT / "include" / "airgate" / "orchestration").rglob("*.py"))
    )
    used_pools = set(re.findall(r'(?i)pool"?\s*[=:]\s*"([^"]+)"', dag_code))
    assert used_pools and used_pools <= pools


def test_readme_leads_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first = text[: text.find("##", text.find("##") + 2)]
    assert "make demo" in first and "make test" in first


def _pins(path: Path) -> dict[str, str]:
    """Normalised name -> version of each `name==version` line (extras dropped); comments and `-r` skipped."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#")[0].strip()
        if not line or line.startswith("-r"):
            continue
        name, _, version = line.partition("==")
        pins[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version
    return pins


def _pip_installs(dockerfile: Path) -> list[list[str]]:
    """The argument lists of every `pip install` the Dockerfile's RUN instructions (shell form) run."""
    import shlex

    from dockerfile_parse import DockerfileParser

    runs = [i["value"] for i in DockerfileParser(path=str(dockerfile)).structure if i["instruction"] == "RUN"]
    commands = [shlex.split(part) for run in runs for part in re.split(r"&&|;|\|\|", run)]
    return [
        c[c.index("install") + 1 :]
        for c in commands
        if "install" in c and any(Path(w).name.startswith("pip") for w in c[: c.index("install")])
    ]


def _option_values(args: list[str], *flags: str) -> list[str]:
    values = []
    for i, arg in enumerate(args):
        for flag in flags:
            if arg == flag and i + 1 < len(args):
                values.append(args[i + 1])
            elif flag.startswith("--") and arg.startswith(flag + "="):
                values.append(arg.split("=", 1)[1])
    return values


def test_dockerfile_installs_exactly_the_pinned_set() -> None:
    installs = _pip_installs(ROOT / "Dockerfile")
    with_requirements = [
        a
        for a in installs
        if any(Path(v).name == "requirements.txt" for v in _option_values(a, "-r", "--requirement"))
    ]
    assert with_requirements, "the Dockerfile must pip install requirements.txt"
    for args in with_requirements:
        assert any(Path(v).name == "constraints.txt" for v in _option_values(args, "-c", "--constraint")), (
            args
        )
    # Any other install brings nothing from an index: local paths only, without their dependencies.
    for args in installs:
        if args in with_requirements:
            continue
        assert "--no-deps" in args, args
        targets = [a for i, a in enumerate(args) if not a.startswith("-") and args[i - 1] not in ("-c", "-r")]
        assert targets and all(t.startswith(("/", ".")) for t in targets), args
    # and requirements.txt itself names exact versions only
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        line = raw.split("#")[0].strip()
        assert (
            not line
            or line.startswith("-r ")
            or re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[\w,\-]+\])?==[\w.+]+", line)
        ), raw


def test_requirements_agree_with_constraints() -> None:
    constraints = _pins(ROOT / "constraints.txt")
    for name in ("requirements.txt", "requirements-dev.txt"):
        pins = _pins(ROOT / name)
        disagree = {
            p: (v, constraints[p]) for p, v in pins.items() if p in constraints and constraints[p] != v
        }
        assert not disagree, f"{name} and constraints.txt pin different versions: {disagree}"
    # the Celery executor's set: celery 5.7.0 (what provider 3.26.0 resolves to alone) fails to import
    reqs = _pins(ROOT / "requirements.txt")
    assert reqs["apache-airflow-providers-celery"] == "3.26.0" and reqs["celery"] == "5.6.3"
    assert {"redis", "asyncpg"} <= set(reqs) and {"kombu", "redis", "asyncpg"} <= set(constraints)


# Value names of the official chart (apache/airflow chart/values.yaml) that the Helm section of
# docs/kubernetes.md and docs/helm-values.yaml use; a key outside this list is a typo or a guess.
# `config` is airflow.cfg, free-form below its sections.
CHART_VALUE_KEYS = {
    "airflowVersion",
    "airflowHome",
    "images",
    "images.airflow",
    "images.airflow.repository",
    "images.airflow.tag",
    "images.airflow.pullPolicy",
    "imagePullSecrets",
    "executor",
    "workers",
    "workers.replicas",
    "dags",
    "dags.persistence",
    "dags.persistence.enabled",
    "dags.gitSync",
    "dags.gitSync.enabled",
    "dags.gitSync.repo",
    "dags.gitSync.branch",
    "dags.gitSync.ref",
    "dags.gitSync.rev",
    "dags.gitSync.subPath",
    "dags.gitSync.depth",
    "dags.gitSync.credentialsSecret",
    "dags.gitSync.sshKeySecret",
    "postgresql",
    "postgresql.enabled",
    "redis",
    "redis.enabled",
    "data",
    "data.metadataSecretName",
    "data.brokerUrlSecretName",
    "fernetKeySecretName",
    "apiSecretKeySecretName",
    "jwtSecretName",
    "extraEnvFrom",
    "extraEnv",
    "env",
    "secret",
    "config",
    "migrateDatabaseJob",
    "migrateDatabaseJob.extraInitContainers",
}
AIRGATE_SETTINGS = {
    "AIRGATE_WAREHOUSE_URL",
    "AIRGATE_MLFLOW_URI",
    "AIRGATE_MLFLOW_ARTIFACTS",
    "AIRGATE_STORAGE_URL",
    "AIRGATE_AUDIT_KEY",
}


def _key_paths(node: object, prefix: str = "") -> set[str]:
    if not isinstance(node, dict) or prefix == "config":
        return set()
    paths = set()
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        paths |= {path} | _key_paths(value, path)
    return paths


def test_helm_values_use_the_charts_names_and_airgates_settings() -> None:
    values = yaml.safe_load((ROOT / "docs" / "helm-values.yaml").read_text())
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    section = doc[doc.index("## Running airgate with the official Airflow Helm chart") :]
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    assert values in blocks, "the values shown in docs/kubernetes.md and docs/helm-values.yaml differ"
    for block in blocks:
        assert _key_paths(block) <= CHART_VALUE_KEYS, _key_paths(block) - CHART_VALUE_KEYS

    assert values["executor"] in {"CeleryExecutor", "KubernetesExecutor"}
    assert values["airflowVersion"] == "3.3.2"
    image = values["images"]["airflow"]
    assert image["repository"] and image["tag"] not in ("", "latest")
    assert values["dags"]["gitSync"]["enabled"] is False  # baked-in DAGs
    # every component shares the JWT, [api] and Fernet keys, and reaches the api-server's Execution API
    assert all(values[k] for k in ("jwtSecretName", "apiSecretKeySecretName", "fernetKeySecretName"))
    assert values["config"]["core"]["execution_api_server_url"].endswith(
        "-api-server:{{ .Values.ports.apiServer }}/execution/"
    )
    assert {s["envName"] for s in values["secret"]} == {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"}

    # airgate's settings come from one Secret, whose keys are the settings airgate reads
    env_from = yaml.safe_load(values["extraEnvFrom"])
    secret_name = env_from[0]["secretRef"]["name"]
    created = re.search(rf"create secret generic {secret_name} (.*?)\n#", section, re.S)
    assert created, f"the doc must show how to create the Secret {secret_name}"
    assert set(re.findall(r"--from-literal=(\w+)=", created.group(1))) == AIRGATE_SETTINGS
    source = "\n".join(p.read_text() for p in (ROOT / "include" / "airgate").rglob("*.py"))
    assert all(f'"{s}"' in source for s in AIRGATE_SETTINGS | {e["name"] for e in values["env"]})

    # the warehouse migrations: once per install/upgrade, with the project image and the same settings
    (migrate,) = values["migrateDatabaseJob"]["extraInitContainers"]
    assert migrate["command"] == ["python", "-m", "airgate.cli", "migrate"]
    assert migrate["image"] == f"{image['repository']}:{image['tag']}"
    assert migrate["envFrom"] == env_from
    from airgate.orchestration.cli import build_parser

    assert build_parser().parse_args(["migrate"]).command == "migrate"
