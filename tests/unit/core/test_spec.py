"""The model spec: what a data engineer sees when the YAML is right, and when it is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airgate.core.spec import SpecError, load_catalog, load_spec, load_specs
from tests.helpers import REPO_ROOT

SPEC = REPO_ROOT / "include" / "specs" / "knowledge_tracing.yaml"


def _write(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(SPEC.read_text())
    mutate(doc)
    path = tmp_path / f"{doc.get('name', 'x')}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_shipped_spec_loads_with_every_section() -> None:
    spec = load_spec(SPEC)
    assert spec.name == "knowledge_tracing"
    assert {c.kind for c in spec.candidates} == {"baseline", "lightgbm", "dkt"}
    assert spec.approval.quorum >= 1 and spec.approval.approvers.users
    assert spec.data_schema.label == "correct"
    assert len(spec.spec_hash) == 64


@pytest.mark.parametrize(
    ("mutate", "field", "fix"),
    [
        (lambda d: d.pop("approval"), "approval", "add the field"),
        (lambda d: d["splits"].update(train=0.9), "splits", "must be 1.0"),
        (lambda d: d["candidates"][1].update(kind="xgboost"), "candidates[1].kind", "use one of"),
        (lambda d: d.update(candidates=[{"name": "lgbm", "kind": "lightgbm"}]), "candidates", "baseline"),
        (lambda d: d["scoring"].update(chunk_rows=5), "scoring.chunk_rows", "larger value"),
        (lambda d: d.update(colour="blue"), "colour", "remove it"),
        (lambda d: d["schema"].update(label="passed"), "schema", "not declared in schema.columns"),
        (lambda d: d["approval"].update(quorum=0), "approval.quorum", "larger value"),
        (lambda d: d.update(source={"kind": "sql", "conn_id": "app"}), "source", "watermark_column"),
        (
            lambda d: d["label_policy"].update(auto_label_min_confidence=0.4),
            "label_policy.auto_label_min_confidence",
            "larger value",
        ),
        (
            lambda d: d["monitoring"].update(retrain_schedule="every sunday"),
            "monitoring.retrain_schedule",
            "cron expression with five fields",
        ),
        (
            lambda d: d["scoring"].update(schedule="0 25 * * *"),
            "scoring.schedule",
            "cron expression with five fields",
        ),
        (lambda d: d["scoring"].update(schedule="0 2 * *"), "scoring.schedule", "'0 2 * * *'"),
        (lambda d: d["source"].update(poll_schedule="@every_minute"), "source.poll_schedule", "@continuous"),
        (lambda d: d["label_policy"].update(schedule="hourly"), "label_policy.schedule", "five fields"),
        (lambda d: d["schema"].update(naive_timezone="Mars/Olympus"), "schema.naive_timezone", "IANA name"),
        (
            lambda d: d.update(privacy={"pseudonymize": ["email"]}),
            "(top level)",
            "not declared in schema.columns",
        ),
        (
            lambda d: d.update(privacy={"pseudonymize": ["event_id"]}),
            "(top level)",
            "carries no personal data",
        ),
        (lambda d: d["source"].update(lookback=-1), "source.lookback", "larger value"),
    ],
)
def test_bad_spec_names_file_field_and_fix(tmp_path: Path, mutate, field: str, fix: str) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, mutate)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    msg = str(err.value)
    assert str(path) in msg
    assert f"field '{field}" in msg
    assert "Fix:" in msg and fix in msg


def test_file_name_must_match_model_name(tmp_path: Path) -> None:
    path = tmp_path / "other_name.yaml"
    path.write_text(SPEC.read_text())
    with pytest.raises(SpecError, match="rename the file"):
        load_spec(path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nsource: [unclosed\n")
    with pytest.raises(SpecError, match=r"line \d+"):
        load_spec(path)


def test_load_specs_reads_every_yaml_in_the_folder(tmp_path: Path) -> None:
    (tmp_path / "knowledge_tracing.yaml").write_text(SPEC.read_text())
    _write(tmp_path, lambda d: d.update(name="tiny_model"))
    assert [s.name for s in load_specs(tmp_path)] == ["knowledge_tracing", "tiny_model"]


@pytest.mark.parametrize(
    "schedule", ["@continuous", "@daily", "@once", "*/10 * * * *", "0 3 * * 0", "30 2 1-7 * MON"]
)
def test_every_schedule_airflow_runs_is_accepted(tmp_path: Path, schedule: str) -> None:
    spec = load_spec(_write(tmp_path, lambda d: d["source"].update(poll_schedule=schedule)))
    assert spec.source.poll_schedule == schedule


def test_a_key_set_twice_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    text = SPEC.read_text()
    path = tmp_path / "knowledge_tracing.yaml"
    path.write_text(text.replace("owner: ", "owner: someone\nowner: ", 1))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    line = text.splitlines().index(next(ln for ln in text.splitlines() if ln.startswith("owner: "))) + 1
    assert f"line {line + 1}" in str(err.value) and f"first on line {line}" in str(err.value)
    assert "'owner' is set twice" in str(err.value) and "Fix: keep one of the two" in str(err.value)


def test_a_spec_that_is_not_utf8_names_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "knowledge_tracing.yaml"
    path.write_bytes(SPEC.read_bytes().replace(b"owner: ", "owner: J\u00fcrgen # ".encode("latin-1"), 1))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(path) in str(err.value) and "not UTF-8 (byte 0xfc" in str(err.value)
    assert "Fix: save the file as UTF-8" in str(err.value)


def test_the_catalog_keeps_the_good_specs_beside_a_broken_one(tmp_path: Path) -> None:
    (tmp_path / "knowledge_tracing.yaml").write_text(SPEC.read_text())
    (tmp_path / "broken.yaml").write_text("name: broken\nowner: x\n")
    catalog = load_catalog(tmp_path)
    assert [s.name for s in catalog.specs] == ["knowledge_tracing"]
    assert [e.path for e in catalog.errors] == [str(tmp_path / "broken.yaml")]
    assert "field 'approval'" in str(catalog.errors[0])


def test_a_missing_specs_folder_names_the_setting(tmp_path: Path) -> None:
    catalog = load_catalog(tmp_path / "nowhere")
    assert not catalog.specs and "AIRGATE_SPECS_DIR" in str(catalog.errors[0])
    with pytest.raises(SpecError, match="AIRGATE_SPECS_DIR"):
        load_specs(tmp_path / "nowhere")
