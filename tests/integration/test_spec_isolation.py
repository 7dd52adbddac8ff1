"""One broken spec costs only its own model: the other models keep every DAG, and the broken one is reported in
Airflow's DAG import errors, naming its file, the field and the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.dag_import
SPEC = REPO_ROOT / "include" / "specs" / "knowledge_tracing.yaml"
STAGES = ("collect", "clean", "label", "train", "score", "monitor")
# Parsed by Airflow's own DagBag in a fresh process, as the dag-processor parses each file.
PARSE = (
    "import json, sys\n"
    "from airflow.dag_processing.dagbag import DagBag\n"
    "bag = DagBag(dag_folder=sys.argv[1])\n"
    "print(json.dumps({'dag_ids': sorted(bag.dag_ids), 'import_errors': bag.import_errors}))\n"
)


def _parse(specs: Path) -> dict:  # type: ignore[type-arg]
    env = {**os.environ, "AIRGATE_SPECS_DIR": str(specs)}
    out = subprocess.run(
        [sys.executable, "-c", PARSE, str(REPO_ROOT / "dags")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _second_model(specs: Path, name: str, edit: tuple[str, str] | None = None) -> Path:
    text = SPEC.read_text().replace("name: knowledge_tracing", f"name: {name}", 1)
    if edit:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    path = specs / f"{name}.yaml"
    path.write_text(text)
    return path


def test_a_bad_cron_a_missing_section_and_bad_bytes_cost_only_their_own_models(tmp_path: Path) -> None:
    (tmp_path / "knowledge_tracing.yaml").write_text(SPEC.read_text())
    bad_cron = _second_model(tmp_path, "bad_cron", ('schedule: "0 2 * * *"', 'schedule: "0 25 * * *"'))
    no_approval = tmp_path / "no_approval.yaml"
    no_approval.write_text("name: no_approval\nowner: x\n")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"name: latin1\nowner: J\xfcrgen\n")

    parsed = _parse(tmp_path)

    assert parsed["dag_ids"] == sorted(f"knowledge_tracing__{s}" for s in STAGES)
    errors = parsed["import_errors"]
    assert list(errors) == [str(REPO_ROOT / "dags" / "airgate_spec_errors.py")], errors
    report = next(iter(errors.values()))
    assert "3 model specs did not load" in report
    assert (
        f"{bad_cron}:\n  - field 'scoring.schedule': '0 25 * * *' is not a valid cron expression. Fix:"
        in report
    )
    assert f"{no_approval}:" in report and "field 'approval'" in report and "Fix: add the field" in report
    assert f"{latin1}:" in report and "not UTF-8" in report


def test_good_specs_parse_without_import_errors(tmp_path: Path) -> None:
    (tmp_path / "knowledge_tracing.yaml").write_text(SPEC.read_text())
    _second_model(tmp_path, "second_model")
    parsed = _parse(tmp_path)
    assert parsed["import_errors"] == {}
    assert parsed["dag_ids"] == sorted(
        f"{m}__{s}" for m in ("knowledge_tracing", "second_model") for s in STAGES
    )
