"""The project's own files: pinned requirements, a parseable Dockerfile, settings that match what DAGs use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.unit


def test_requirements_are_pinned_exactly() -> None:
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln]
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][\w.+]*", r) for r in reqs), reqs
    names = {r.split("==")[0].split("[")[0].lower() for r in reqs}
    assert {"apache-airflow", "apache-airflow-providers-standard", "apache-airflow-providers-cncf-kubernetes",
            "great-expectations", "evidently", "mlflow", "lightgbm", "torch", "optuna", "sqlalchemy",
            "psycopg"} <= names
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
    conns = {c["conn_id"]: c for c in doc["connections"]}
    assert {"airgate_warehouse", "airgate_mlflow"} <= set(conns)
    assert conns["airgate_warehouse"]["conn_type"] == "sqlite"
    pools = {p["pool_name"] for p in doc["pools"]}
    dagfactory = (ROOT / "include" / "airgate" / "dagfactory.py").read_text()
    used_pools = set(re.findall(r'pool="([^"]+)"', dagfactory))
    assert used_pools and used_pools <= pools


def test_readme_leads_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first = text[: text.find("##", text.find("##") + 2)]
    assert "make demo" in first and "make test" in first
