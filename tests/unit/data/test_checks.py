"""Great Expectations on clean versions: a suite from the spec, critical failures stop, warnings are evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update

from airgate.core import audit
from airgate.core.warehouse import clean_events
from airgate.data import checks, clean, collect, labeling
from airgate.dev.simulator import SimConfig, Simulator
from tests.helpers import land

pytestmark = pytest.mark.data


def _clean(engine, spec, sim, root: Path, batches: range) -> list[str]:  # type: ignore[no-untyped-def]
    collect.ingest(engine, spec, land(sim, root, batches))
    return clean.clean_pending(engine, spec).clean_version_ids


def test_a_clean_batch_passes_and_docs_are_kept(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    [vid] = _clean(engine, spec, small_sim, tmp_path, range(1))
    [outcome] = checks.validate_pending(engine, spec)
    assert outcome.status == "pass" and outcome.critical == [] and outcome.warnings == []
    kinds = {c["expectation"] for c in outcome.checks}
    assert {
        "expect_column_values_to_be_unique",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_between",
    } <= kinds
    stored = json.loads(Path(outcome.results_path).read_text())
    assert stored["version_id"] == vid and stored["status"] == "pass"
    assert outcome.docs_path and Path(outcome.docs_path.removeprefix("file://")).is_file()
    assert checks.pending(engine, spec.name) == []


def test_distribution_shift_is_a_warning_with_evidence(engine, spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from airgate.dev.simulator import write_catalog

    sim = Simulator(
        SimConfig(students_per_batch=120, events_per_student=40, new_cohort_from_batch=1, cohort_shift=-2.5)
    )
    write_catalog(
        sim, Path(__import__("os").environ["AIRGATE_HOME"]) / "catalog" / "knowledge_tracing_items.csv"
    )
    _clean(engine, spec, sim, tmp_path, range(1))
    checks.validate_pending(engine, spec)
    _clean(engine, spec, sim, tmp_path, range(1, 2))  # the weaker cohort arrives
    [outcome] = checks.validate_pending(engine, spec)
    assert outcome.status == "warn" and not outcome.critical
    assert any("expect_column_mean_to_be_between(correct)" in w for w in outcome.warnings)
    assert labeling.label_pending(engine, spec).created  # a warning does not stop the pipeline


def test_critical_failure_stops_labeling_of_that_version(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    [good] = _clean(engine, spec, small_sim, tmp_path, range(1))
    [bad] = _clean(engine, spec, small_sim, tmp_path, range(1, 2))
    with engine.begin() as conn:  # corruption after cleaning: a response time no rule would have let through
        conn.execute(update(clean_events).where(clean_events.c.version_id == bad).values(response_time_ms=5))
    outcomes = {o.version_id: o for o in checks.validate_pending(engine, spec)}
    assert outcomes[good].status == "pass" and outcomes[bad].status == "fail"
    assert any("response_time_ms" in c for c in outcomes[bad].critical)
    result = labeling.label_pending(engine, spec)
    assert result.clean_versions == [good]
    assert audit.events(engine, event_type="validate")[-1]["details"]["status"] == "fail"


def test_near_duplicate_columns_are_found() -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    a = rng.normal(size=500)
    df = pd.DataFrame({"a": a, "a_copy": a * 2 + 1, "b": rng.normal(size=500), "const": 1.0})
    found = checks.duplicate_columns(df, 0.99)
    assert len(found) == 1 and found[0].startswith("a~a_copy")
