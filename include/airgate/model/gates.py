"""Validation gates with three states: pass, fail, not evaluated. An absent or unevaluated gate is never a pass.

The gate report is the evidence bundle an approver reads. Its SHA-256 is recorded with the candidate and with the
approval request, so a decision can prove which evidence it was made on. The report files, like every file the run
reads (split, test predictions, roster), are in storage (``airgate.core.storage``, ``AIRGATE_STORAGE_URL``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
from sqlalchemy import update
from sqlalchemy.engine import Engine

from airgate.core import audit, registry, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import model_candidates
from airgate.data.features import FEATURES
from airgate.data.privacy import pseudonymize_roster
from airgate.model.contracts import TrainingRecord
from airgate.model.gate_report import (  # noqa: F401 - re-exported: callers import them from here
    Gate,
    GateReport,
    GateState,
    blocks,
    evaluate_gates,
    evidence_hash,
    render_html,
)

log = logging.getLogger(__name__)


def slice_gate(spec: ModelSpec, test_pred: pd.DataFrame, p_col: str) -> tuple[Gate, dict[str, Any]]:
    """Primary metric per slice (grade level, cohort...) of the test rows; the largest gap within a column."""
    from sklearn.metrics import roc_auc_score

    limit = spec.gates.max_slice_gap
    if not spec.slices.by:
        return Gate(
            "slice_gap",
            GateState.NOT_EVALUATED,
            None,
            limit,
            "the spec declares no slices",
            blocking_if_not_evaluated=False,
        ), {}
    roster_path = storage.location(spec.slices.roster or "")
    if not storage.is_file(roster_path):  # not evaluated, and so blocking: never a pass
        return Gate(
            "slice_gap",
            GateState.NOT_EVALUATED,
            None,
            limit,
            f"roster {storage.as_string(roster_path)} (spec field slices.roster) not found in storage "
            f"({storage.describe()})",
        ), {}
    with storage.open_read(roster_path, what="the roster (spec field slices.roster)") as fh:
        roster = pd.read_csv(fh, dtype=str)
    roster = pseudonymize_roster(roster, spec)  # the stored entity ids are pseudonyms when privacy is on
    missing = [c for c in spec.slices.by if c not in roster.columns]
    if missing:
        return Gate("slice_gap", GateState.NOT_EVALUATED, None, limit, f"roster lacks columns {missing}"), {}
    df = test_pred.merge(roster, on="student_id", how="left")
    table: dict[str, Any] = {}
    worst, worst_col = 0.0, ""
    for col in spec.slices.by:
        rows = {}
        for value, part in df.groupby(df[col].fillna("(unknown)"), sort=True):
            ok = len(part) >= spec.slices.min_rows and part["label"].nunique() == 2
            auc = float(roc_auc_score(part["label"], part[p_col])) if part["label"].nunique() == 2 else None
            rows[str(value)] = {"rows": int(len(part)), "auc": auc, "counted": ok}
        counted = [float(r["auc"]) for r in rows.values() if r["counted"] and r["auc"] is not None]
        gap = float(max(counted) - min(counted)) if len(counted) >= 2 else 0.0
        table[col] = {"slices": rows, "gap": gap, "compared": len(counted)}
        if gap >= worst:
            worst, worst_col = gap, col
    if not any(t["compared"] for t in table.values()):
        return Gate(
            "slice_gap",
            GateState.NOT_EVALUATED,
            None,
            limit,
            f"no slice has {spec.slices.min_rows}+ test rows with both outcomes",
        ), table
    detail = "; ".join(f"{c}: gap {t['gap']:.3f} over {t['compared']} slices" for c, t in table.items())
    state = GateState.PASS if worst <= limit else GateState.FAIL
    return Gate(
        "slice_gap",
        state,
        worst,
        limit,
        f"largest {spec.gates.primary_metric} gap {worst:.3f} ({worst_col}), must be <= {limit}. {detail}",
    ), table


# Counts of earlier events grow with calendar time by construction, so they "drift" between any two periods;
# drift is judged on the features that describe students and items, not on how long the app has run.
DRIFT_FEATURES = [f for f in FEATURES if f not in ("item_attempts", "stu_attempts", "stu_skill_attempts")]


def drift_gate(
    engine: Engine, spec: ModelSpec, training_run_id: str, runs_dir: storage.Location, data_version: str
) -> tuple[Gate, dict[str, Any]]:
    """Evidently: the training split's features against the newest clean version's. Evidence unless the spec
    makes it blocking."""
    limit = spec.gates.max_drift_share
    blocking = spec.gates.drift_blocking
    try:
        from airgate.core import datasets
        from airgate.data.feature_store import read_parquet
        from airgate.data.features import build_features, load_history
        from airgate.model import drift

        run = storage.location(runs_dir) / training_run_id
        reference = read_parquet(run / "split" / "train.parquet", what="the training split")
        latest = datasets.latest(engine, spec.name, "clean")
        if latest is None:
            raise ValueError("no clean version to compare with")
        history = load_history(engine, spec.name)
        feats = build_features(history)
        current = feats[
            feats["event_id"].isin(set(history.loc[history["version_id"] == latest.version_id, "event_id"]))
        ]
        result = drift.drift_report(
            reference[DRIFT_FEATURES],
            current[DRIFT_FEATURES],
            DRIFT_FEATURES,
            run / "drift",
            max_drift_share=limit,
            title=f"{spec.name}: training data ({data_version}) vs {latest.version_id}",
        )
    except Exception as exc:  # noqa: BLE001 - the report failing is itself evidence, never a silent pass
        log.warning("drift report failed: %s", exc)
        return Gate(
            "data_drift",
            GateState.NOT_EVALUATED,
            None,
            limit,
            f"drift report failed: {exc}",
            blocking_if_not_evaluated=blocking,
            blocking=blocking,
        ), {}
    summary = dict(result.summary())
    summary["current_version"] = latest.version_id
    state = GateState.FAIL if result.dataset_drift else GateState.PASS
    return Gate(
        "data_drift",
        state,
        result.drift_share,
        limit,
        f"{result.drift_share:.0%} of features drifted between training data and {latest.version_id} "
        f"(dataset drift at >= {limit:.0%}){'' if blocking else '; evidence only, not blocking'}",
        blocking=blocking,
    ), summary


def test_read_gate(engine: Engine, training_run_id: str, model_uri: str) -> Gate:
    from airgate.model.training import test_reads

    reads = test_reads(engine, training_run_id)
    ok = len(reads) == 1 and str(reads[0]["reader"]).endswith(model_uri)
    return Gate(
        "test_set_read_once",
        GateState.PASS if ok else GateState.FAIL,
        float(len(reads)),
        1.0,
        f"test split read {len(reads)} time(s)" + (f", to evaluate {reads[0]['reader']}" if reads else ""),
    )


@dataclass(frozen=True)
class _Evaluated:
    gates: list[Gate]
    slices: dict[str, Any]
    drift: dict[str, Any]


def _evaluate_all(
    engine: Engine,
    spec: ModelSpec,
    record: TrainingRecord,
    training_run_id: str,
    runs_dir: storage.Location,
    data_version: str,
) -> _Evaluated:
    """The metric gates, then the ones that read files (slices, drift) and the test-read ledger."""
    baseline_name = next(c.name for c in spec.candidates if c.kind == "baseline")
    gates = evaluate_gates(
        spec,
        record.candidates[record.chosen],
        record.candidates[baseline_name],
        record.champion.get("test_auc"),
        record.champion.get("version"),
    )
    with storage.open_read(record.test_predictions, what="the run's test predictions") as fh:
        test_pred = pd.read_csv(fh, dtype={"event_id": str, "student_id": str})
    slice_g, slices = slice_gate(spec, test_pred, f"p_{record.chosen}")
    drift_g, drift_summary = drift_gate(engine, spec, training_run_id, runs_dir, data_version)
    gates += [slice_g, drift_g, test_read_gate(engine, training_run_id, record.model_uri)]
    return _Evaluated(gates, slices, drift_summary)


def _evidence(
    spec: ModelSpec,
    training_run_id: str,
    cand: Any,
    record: TrainingRecord,
    evaluated: _Evaluated,
    approvable: bool,
) -> dict[str, Any]:
    """The bundle an approver reads; its key set and values are what the evidence hash covers."""
    return {
        "model": spec.name,
        "training_run_id": training_run_id,
        "data_version": cand["data_version"],
        "trained_by": cand["trained_by"],
        "mlflow_run_id": cand["mlflow_run_id"],
        "model_uri": record.model_uri,
        "candidate": record.chosen,
        "kind": record.kind,
        "metrics": record.candidates,
        "rows": record.rows,
        "champion": record.champion,
        "pareto": record.pareto,
        "slices": evaluated.slices,
        "drift": evaluated.drift,
        "gates": [asdict(g) for g in evaluated.gates],
        "approvable": approvable,
        "spec_hash": spec.spec_hash,
        "code_version": record.code_version,
        "split_hash": record.split_hash,
    }


def validate(
    engine: Engine,
    spec: ModelSpec,
    cfg: registry.MlflowConfig,
    training_run_id: str,
    runs_dir: storage.Location,
    actor: str = "airflow",
) -> GateReport:
    """Evaluate every gate on what finalize recorded, freeze the evidence under its hash and record the outcome."""
    from airgate.model.training import candidate_row

    cand = candidate_row(engine, training_run_id)
    record = TrainingRecord.from_dict(cand["metrics"])
    evaluated = _evaluate_all(engine, spec, record, training_run_id, runs_dir, cand["data_version"])
    approvable = not any(blocks(g) for g in evaluated.gates)
    evidence = _evidence(spec, training_run_id, cand, record, evaluated, approvable)
    digest = evidence_hash(evidence)
    out = storage.location(runs_dir) / training_run_id
    storage.write_text_atomic(
        out / "gate_report.json",
        json.dumps({"evidence": evidence, "evidence_hash": digest}, indent=2, default=str),
    )
    storage.write_text_atomic(out / "gate_report.html", render_html(evidence, digest))
    report = GateReport(spec.name, training_run_id, approvable, evaluated.gates, evidence, digest)
    _record_outcome(engine, report, actor)
    log.info("gates for %s: %s", training_run_id, report.states)
    return report


def _record_outcome(engine: Engine, report: GateReport, actor: str) -> None:
    """The frozen evidence and the candidate's new status, and their audit entry, in one transaction."""
    with engine.begin() as conn:
        conn.execute(
            update(model_candidates)
            .where(model_candidates.c.training_run_id == report.training_run_id)
            .values(
                gate_report=json.loads(json.dumps(report.evidence, default=str)),
                evidence_hash=report.evidence_hash,
                status="gates_passed" if report.approvable else "gates_failed",
            )
        )
        audit.append(
            conn,
            actor=actor,
            event_type="gate",
            model=report.model,
            entity={"training_run_id": report.training_run_id, "evidence_hash": report.evidence_hash},
            details={"approvable": report.approvable, "failures": report.failures, "gates": report.states},
        )
