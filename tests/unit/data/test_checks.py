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


def _empty_clean_version(engine, spec, parent: str) -> str:  # type: ignore[no-untyped-def]
    """A clean version with no rows, as cleaning leaves one when it quarantined the whole batch."""
    from airgate.core import datasets

    with engine.begin() as conn:
        return datasets.insert_version(
            conn,
            model=spec.name,
            kind="clean",
            digest="0" * 64,
            parents=[parent],
            row_count=0,
            schema={},
            summary={"accepted": 0},
        )


def test_an_empty_version_is_recorded_as_empty_and_never_a_reference(
    engine, spec, small_sim, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from airgate.core.warehouse import data_validations

    [first] = _clean(engine, spec, small_sim, tmp_path, range(1))
    empty = _empty_clean_version(engine, spec, first)
    outcomes = {o.version_id: o for o in checks.validate_pending(engine, spec)}
    assert outcomes[first].status == "pass"
    assert outcomes[empty].status == "empty" and not outcomes[empty].critical
    assert "0 rows" in str(outcomes[empty].note)
    assert json.loads(Path(outcomes[empty].results_path).read_text())["status"] == "empty"
    with engine.connect() as conn:
        stored = conn.execute(
            select(data_validations.c.status).where(data_validations.c.version_id == empty)
        ).scalar_one()
    assert stored == "empty" and empty not in checks.failed_versions(engine, spec.name)
    assert checks.blocking_failures(list(outcomes.values())) == {}  # nothing to use is not a failure
    [later] = _clean(engine, spec, small_sim, tmp_path, range(1, 2))
    [outcome] = checks.validate_pending(engine, spec)
    assert outcome.version_id == later
    assert json.loads(Path(outcome.results_path).read_text())["reference_version"] == first


def test_a_timestamp_out_of_range_fails_in_the_warehouse(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    [vid] = _clean(engine, spec, small_sim, tmp_path, range(1))
    ids = _some_ids(engine, vid)
    with engine.begin() as conn:  # a date before the spec's earliest_ts, written after cleaning
        conn.execute(
            update(clean_events)
            .where(clean_events.c.version_id == vid, clean_events.c.event_id.in_(ids))
            .values(ts=datetime(1990, 1, 1, tzinfo=UTC))
        )
    [outcome] = checks.validate_pending(engine, spec)
    assert outcome.status == "fail"
    assert any(
        c.startswith("expect_column_values_to_be_between(ts)") and "unexpected 3" in c
        for c in outcome.critical
    )
    # The evidence keeps the offending values (a failed suite is run again with samples).
    assert Path(outcome.results_path).read_text().count("1990-01-01") >= 3


def _some_ids(engine, vid: str) -> list[str]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    with engine.connect() as conn:
        q = select(clean_events.c.event_id).where(clean_events.c.version_id == vid).limit(3)
        return list(conn.execute(q).scalars())


def test_sql_aggregates_match_the_frame_figures(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The reference figures and the duplicate-column check come from the warehouse; they must be pandas' own."""
    import pandas as pd
    from sqlalchemy import select

    from airgate.data import version_stats

    [vid] = _clean(engine, spec, small_sim, tmp_path, range(1))
    with engine.begin() as conn:  # make correct a copy of the response time, so a pair is found
        conn.execute(
            update(clean_events)
            .where(clean_events.c.version_id == vid)
            .values(correct=clean_events.c.response_time_ms)
        )
        df = pd.DataFrame(
            conn.execute(
                select(
                    clean_events.c.skill_id, clean_events.c.response_time_ms, clean_events.c.correct
                ).where(clean_events.c.version_id == vid)
            ).all(),
            columns=["skill_id", "response_time_ms", "correct"],
        )
    df["correct"] = df["correct"].astype("float64")
    ref = version_stats.reference_stats(engine, spec, vid)
    assert ref.rows == len(df) > 0
    assert ref.label_mean == pytest.approx(df["correct"].mean())
    assert ref.response_time_median == pytest.approx(df["response_time_ms"].median())
    mix = df["skill_id"].value_counts(normalize=True).sort_index()
    assert [k for k, _ in ref.skill_mix] == mix.index.tolist()
    assert [w for _, w in ref.skill_mix] == pytest.approx(mix.tolist())
    found = version_stats.duplicate_columns_in(engine, vid, 0.99)
    assert found == checks.duplicate_columns(df, 0.99) and len(found) == 1


def test_the_warehouse_url_never_reaches_the_gx_project(engine, spec, small_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _clean(engine, spec, small_sim, tmp_path, range(1))
    checks.validate_pending(engine, spec)
    project = Path(str(checks.gx_project(spec.name)).removeprefix("file://"))
    config = next(project.rglob("great_expectations.yml")).read_text()
    assert "${" + checks.WAREHOUSE_URL_ENV + "}" in config
    assert engine.url.database not in config and checks.WAREHOUSE_URL_ENV not in __import__("os").environ


def test_a_small_fix_up_version_is_neither_compared_nor_a_reference(
    engine, spec, small_sim, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A 150-row file of one batch's students (a fix-up upload) has a label mean far from a full batch's by chance
    alone: it must not warn of a shift, nor become the reference that makes the next full batch warn."""
    import pandas as pd

    [first] = _clean(engine, spec, small_sim, tmp_path, range(1))
    checks.validate_pending(engine, spec)
    landing = tmp_path / "fixup"
    landing.mkdir()
    batch = pd.read_csv(next((tmp_path / "landing").glob("*.csv")), dtype=str)
    fix = batch[batch["correct"] == "1"].head(150).assign(event_id=lambda d: "fix-" + d["event_id"])
    fix.to_csv(landing / "fixup.csv", index=False)  # all correct: a label mean of 1.0
    collect.ingest(engine, spec, landing)
    [small] = clean.clean_pending(engine, spec).clean_version_ids
    [outcome] = checks.validate_pending(engine, spec)
    assert outcome.version_id == small and outcome.status == "pass" and outcome.warnings == []
    [later] = _clean(engine, spec, small_sim, tmp_path, range(1, 2))
    [outcome] = checks.validate_pending(engine, spec)
    assert json.loads(Path(outcome.results_path).read_text())["reference_version"] == first


def test_validation_draws_no_progress_bars_into_the_task_log(
    sqlite_engine, spec, small_sim, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    """Airflow shows a task's stderr as errors: GX's "Calculating Metrics" bars made every validation look failed."""
    _clean(sqlite_engine, spec, small_sim, tmp_path, range(1))
    capfd.readouterr()
    [outcome] = checks.validate_pending(sqlite_engine, spec)
    assert outcome.status == "pass"
    assert "Calculating Metrics" not in capfd.readouterr().err
