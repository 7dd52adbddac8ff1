"""Data drift between a reference frame (what the model was trained on) and a current frame, with Evidently.

The report is evidence at model validation (and a gate when the spec says so) and, after nightly scoring, the
trigger for retraining, so it must be cheap and repeatable:

* Only the columns asked for are checked: the preset tests each column three times (for the drifted-column
  count, for its own ValueDrift and again for the HTML table) and draws a few plotly figures for it, so the cost
  is about linear in columns; wide frames are what made it slow (evidently issue #763: 356k rows x 100 columns,
  23 minutes). Measured here (2 cores): 20k x 13 about 3 s, 20k x 52 about 12 s, 100k x 13 uncapped about 7 s.
* Each frame is capped at ``max_rows`` rows by seeded sampling, so the cost is bounded and a rerun with the same
  seed gives the same scores.
* Evidently picks the stat test per column, by the reference's row count and the column's distinct values: up to
  1,000 reference rows, p-values (K-S for numbers, chi-square or a Z-test for 5 values or fewer); above, normed
  Wasserstein distance for numbers and Jensen-Shannon for 5 values or fewer and for categories. Its per-column
  verdicts are taken as they are, never re-derived, so our JSON and its HTML agree. Its chi-square takes the
  reference's shares as exact, so on two small samples it flags more than its 5% would suggest: one more reason
  to keep references large.
* Evidently drops missing values before testing, so a column that is entirely missing in one frame (and not the
  other) cannot be tested by it; that is drift by any reading, so it is reported as drifted, with the method
  ``all missing``. Missing shares per column are kept in the JSON, as shifts in missingness are evidence too.

Evidently 0.7's ``Report.run`` sends no telemetry (only its UI service and collector do); ``DO_NOT_TRACK`` is set
anyway, when unset, before it is imported.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from airgate.core import storage

ALL_MISSING = "all missing"
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str  # the stat test Evidently chose
    score: float  # p-value or distance, as Evidently reports it
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    drift_share: float  # drifted columns / columns checked
    dataset_drift: bool  # drift_share >= max_drift_share
    columns: list[ColumnDrift]
    reference_rows: int
    current_rows: int
    html_path: str
    json_path: str
    seconds: float

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def summary(self) -> dict[str, Any]:
        """Small enough for an audit record or an XCom; the per-column detail stays in the JSON file."""
        return {
            "drift_share": self.drift_share,
            "dataset_drift": self.dataset_drift,
            "drifted": self.drifted,
            "columns_checked": len(self.columns),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "html_path": self.html_path,
            "json_path": self.json_path,
            "seconds": self.seconds,
        }


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    out_dir: storage.Location,
    max_drift_share: float = 0.5,
    max_rows: int = 20_000,
    seed: int = 0,
    title: str = "Data drift",
    *,
    categorical: Sequence[str] = (),
) -> DriftResult:
    """Writes drift.html (Evidently's report) and drift.json (our summary + Evidently's metric results) under out_dir,
    a ``storage.location`` (the approval page and the monitoring views read them from storage, on another host).

    Numeric columns are tested as numerical unless named in ``categorical``; any other dtype (strings, categories,
    booleans) as categorical. ``seconds`` covers sampling, Evidently and writing the HTML, not importing Evidently
    (a few seconds, once per process).
    """
    cols = list(dict.fromkeys(columns))
    _check_inputs(reference, current, cols, max_drift_share, max_rows)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")
    from evidently import __version__ as evidently_version

    started = time.perf_counter()
    cat = [
        c
        for c in cols
        if c in set(categorical) or not _is_numeric(reference[c]) or not _is_numeric(current[c])
    ]
    ref, cur = (
        _prepare(frame, cols, cat, max_rows, np.random.default_rng([seed, side]))
        for side, frame in enumerate((reference, current))
    )
    # Evidently cannot test a column with no values on one side; one with none on either side has not changed.
    ref_missing, cur_missing = ref.isna().mean(), cur.isna().mean()
    empty = [c for c in cols if ref_missing[c] == 1.0 or cur_missing[c] == 1.0]
    tested = [c for c in cols if c not in empty]

    results: dict[str, ColumnDrift] = {}
    evidently_out: dict[str, Any] = {"version": evidently_version, "metrics": [], "tests": []}
    page = _empty_page(title, empty)
    if tested:
        page, evidently_json = _run_evidently(ref, cur, tested, cat, max_drift_share, title)
        evidently_out.update(evidently_json)
        results = _column_results(evidently_out)
        missing = set(tested) - set(results)
        if missing:
            raise RuntimeError(f"Evidently returned no drift verdict for {sorted(missing)}")
    results.update(_all_missing(empty, ref_missing, cur_missing))

    checked = [results[c] for c in cols]
    share = sum(c.drifted for c in checked) / len(checked)
    out = storage.location(out_dir)
    html_path, json_path = out / "drift.html", out / "drift.json"
    _write(html_path, _titled(page, title))
    # The clock stops before the JSON is written, so that the file can carry the same figure as the result.
    result = DriftResult(
        drift_share=share,
        dataset_drift=share >= max_drift_share,
        columns=checked,
        reference_rows=len(ref),
        current_rows=len(cur),
        html_path=storage.as_string(html_path),
        json_path=storage.as_string(json_path),
        seconds=round(time.perf_counter() - started, 3),
    )
    doc = {
        "title": title,
        "summary": result.summary(),
        "max_drift_share": max_drift_share,
        "max_rows": max_rows,
        "seed": seed,
        "rows_given": {"reference": len(reference), "current": len(current)},
        "columns": [asdict(c) for c in checked],
        "categorical": cat,
        "missing_share": {
            c: {"reference": float(ref_missing[c]), "current": float(cur_missing[c])} for c in cols
        },
        "evidently": evidently_out,
    }
    _write(json_path, json.dumps(_json_safe(doc), indent=1, allow_nan=False))
    return result


def _all_missing(empty: list[str], ref_missing: pd.Series, cur_missing: pd.Series) -> dict[str, ColumnDrift]:
    """A column with no values on one side has drifted (it was lost or appeared); on both sides it has not."""
    results = {}
    for c in empty:
        one_side = bool((ref_missing[c] == 1.0) != (cur_missing[c] == 1.0))
        results[c] = ColumnDrift(c, ALL_MISSING, 1.0 if one_side else 0.0, 0.5, one_side)
    return results


def _run_evidently(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    tested: list[str],
    categorical: list[str],
    max_drift_share: float,
    title: str,
) -> tuple[str, dict[str, Any]]:
    """Evidently's data drift preset on the tested columns: its HTML page and its JSON results."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[c for c in tested if c not in categorical],
        categorical_columns=[c for c in tested if c in categorical],
    )
    report = Report(
        [DataDriftPreset(columns=tested, drift_share=max_drift_share)],
        include_tests=True,
        metadata={"title": title},
    )
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Constant and near-empty columns make numpy warn (0/0 in correlations); the scores are still sound.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(
            Dataset.from_pandas(cur[tested], data_definition=definition),
            Dataset.from_pandas(ref[tested], data_definition=definition),
            name=title,
        )
        page = snapshot.get_html_str(as_iframe=False)
    return page, _json_safe(json.loads(snapshot.json()))


def _check_inputs(
    reference: pd.DataFrame, current: pd.DataFrame, cols: list[str], max_drift_share: float, max_rows: int
) -> None:
    """Fail with a message that names the problem, before Evidently fails with one that does not."""
    if not cols:
        raise ValueError("no columns to check for drift")
    if len(current) == 0:
        raise ValueError("the current frame is empty: there are no rows to compare with the reference")
    if len(reference) == 0:
        raise ValueError("the reference frame is empty: there is nothing to compare the current rows with")
    for name, frame in (("reference", reference), ("current", current)):
        absent = [c for c in cols if c not in frame.columns]
        if absent:
            raise ValueError(f"columns missing from the {name} frame: {absent}")
        dates = [c for c in cols if pd.api.types.is_datetime64_any_dtype(frame[c])]
        if dates:
            raise ValueError(
                f"datetime columns cannot be tested for drift (derive a number from them): {dates}"
            )
    if not 0.0 <= max_drift_share <= 1.0:
        raise ValueError(f"max_drift_share must be between 0 and 1, not {max_drift_share}")
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, not {max_rows}")


def _is_numeric(s: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s))


def _prepare(
    frame: pd.DataFrame, cols: list[str], cat: list[str], max_rows: int, rng: np.random.Generator
) -> pd.DataFrame:
    """The columns asked for, at most max_rows of them (seeded), with numbers as float64 and no infinities.

    Nullable dtypes become NaN, which Evidently drops; infinities would break its histograms, so they count as
    missing. The sample keeps the original row order, which Evidently's per-row plots follow."""
    df = frame[cols]
    if len(df) > max_rows:
        df = df.sample(n=max_rows, random_state=rng).sort_index()
    df = df.reset_index(drop=True)
    out = pd.DataFrame(index=df.index)
    for c in cols:
        if c in cat:
            s = df[c].astype("object")
            out[c] = s.where(s.notna(), None)
        else:
            out[c] = (
                pd.to_numeric(df[c], errors="coerce").astype("float64").replace([np.inf, -np.inf], np.nan)
            )
    return out


def _column_results(evidently_out: dict[str, Any]) -> dict[str, ColumnDrift]:
    """Join Evidently's ValueDrift metrics (method, threshold, score) with their tests (its drift verdict)."""
    metrics = {
        m["id"]: m
        for m in evidently_out.get("metrics", [])
        if m.get("config", {}).get("type") == _VALUE_DRIFT
    }
    out: dict[str, ColumnDrift] = {}
    for t in evidently_out.get("tests", []):
        m = metrics.get(t.get("metric_config", {}).get("metric_id"))
        if m is None:
            continue
        cfg = m["config"]
        score = m.get("value")
        out[cfg["column"]] = ColumnDrift(
            column=cfg["column"],
            method=str(cfg.get("method")),
            score=float("nan") if score is None else float(score),
            threshold=float(cfg.get("threshold") or 0.0),
            drifted=t.get("status") == "FAIL",
        )
    return out


def _json_safe(value: Any) -> Any:
    """Strict JSON: NaN and infinities (a p-value on too few rows, say) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _titled(page: str, title: str) -> str:
    """Evidently's page has no <title>; a browser tab of drift reports needs one."""
    return page.replace("<head>", f"<head>\n<title>{html.escape(title)}</title>", 1)


def _empty_page(title: str, empty: list[str]) -> str:
    """The page written when no column could be given to Evidently (all of them entirely missing)."""
    return (
        f"<!DOCTYPE html><html><head></head><body><h1>{html.escape(title)}</h1>"
        f"<p>No column had values in both frames: {html.escape(', '.join(empty))}.</p></body></html>"
    )


def _write(path: storage.StoragePath, text: str) -> None:
    """Atomically, so that a reader (the approval page) never sees half a report."""
    storage.write_text_atomic(path, text)
