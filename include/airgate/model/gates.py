"""Validation gates with three states: pass, fail, not evaluated. An absent or unevaluated gate is never a pass.

The gate report is the evidence bundle an approver reads. Its SHA-256 is recorded with the candidate and with the
approval request, so a decision can prove which evidence it was made on. The report files, like every file the run
reads (split, test predictions, roster), are in storage (``airgate.core.storage``, ``AIRGATE_STORAGE_URL``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from airgate.core import audit, registry, storage
from airgate.core.hashing import canonical_sha256
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import model_candidates
from airgate.data.features import FEATURES
from airgate.model.contracts import TrainingRecord

log = logging.getLogger(__name__)


class GateState(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NOT_EVALUATED = "not_evaluated"


@dataclass(frozen=True)
class Gate:
    name: str
    state: GateState
    observed: float | None
    threshold: float | None
    detail: str
    blocking_if_not_evaluated: bool = True
    blocking: bool = True  # False: evidence only (e.g. drift unless the spec makes it a gate)


@dataclass(frozen=True)
class GateReport:
    model: str
    training_run_id: str
    approvable: bool
    gates: list[Gate]
    evidence: dict[str, Any]
    evidence_hash: str

    @property
    def failures(self) -> list[str]:
        return [f"{g.name}: {g.detail}" for g in self.gates if blocks(g)]

    @property
    def states(self) -> dict[str, str]:
        return {g.name: g.state.value for g in self.gates}

    def xcom(self) -> dict[str, Any]:
        """What the validate task hands on: the run, the evidence's hash and each gate's state, not the evidence."""
        return {
            "training_run_id": self.training_run_id,
            "evidence_hash": self.evidence_hash,
            "gates": self.states,
        }


def blocks(g: Gate) -> bool:
    """A gate stops approval when it failed, or when it could not be evaluated and is required."""
    if not g.blocking:
        return False
    return g.state == GateState.FAIL or (g.state == GateState.NOT_EVALUATED and g.blocking_if_not_evaluated)


def evidence_hash(evidence: dict[str, Any]) -> str:
    return canonical_sha256(evidence)


def evaluate_gates(
    spec: ModelSpec,
    chosen: dict[str, float],
    baseline: dict[str, float],
    champion_auc: float | None,
    champion_version: str | None,
) -> list[Gate]:
    metric = f"test_{spec.gates.primary_metric}"
    gates: list[Gate] = []
    if metric in chosen and metric in baseline:
        lift = chosen[metric] - baseline[metric]
        ok = lift >= spec.gates.beat_baseline_by
        gates.append(
            Gate(
                "beats_baseline",
                GateState.PASS if ok else GateState.FAIL,
                lift,
                spec.gates.beat_baseline_by,
                f"{metric} {chosen[metric]:.4f} vs baseline {baseline[metric]:.4f} (lift {lift:+.4f})",
            )
        )
    else:
        gates.append(
            Gate(
                "beats_baseline",
                GateState.NOT_EVALUATED,
                None,
                spec.gates.beat_baseline_by,
                f"{metric} missing for the candidate or the baseline",
            )
        )
    if champion_auc is None:
        gates.append(
            Gate(
                "no_worse_than_champion",
                GateState.NOT_EVALUATED,
                None,
                spec.gates.champion_tolerance,
                "no approved champion yet",
                blocking_if_not_evaluated=False,
            )
        )
    else:
        drop = champion_auc - chosen.get("test_auc", float("nan"))
        ok = bool(drop <= spec.gates.champion_tolerance)
        gates.append(
            Gate(
                "no_worse_than_champion",
                GateState.PASS if ok else GateState.FAIL,
                -drop,
                -spec.gates.champion_tolerance,
                f"test_auc {chosen.get('test_auc', float('nan')):.4f} vs champion v{champion_version} "
                f"{champion_auc:.4f} on the same test rows",
            )
        )
    ece = chosen.get("test_ece")
    limit = spec.gates.max_calibration_error
    if ece is None:
        gates.append(Gate("calibration", GateState.NOT_EVALUATED, None, limit, "test_ece was not measured"))
    else:
        gates.append(
            Gate(
                "calibration",
                GateState.PASS if ece <= limit else GateState.FAIL,
                ece,
                limit,
                f"expected calibration error {ece:.4f}, must be <= {limit}",
            )
        )
    diff = chosen.get("repro_max_abs_diff")
    tol = spec.gates.reproducibility_tolerance
    if diff is None:
        gates.append(
            Gate(
                "reproducible",
                GateState.NOT_EVALUATED,
                None,
                tol,
                "the candidate was not retrained on the same data version",
            )
        )
    else:
        gates.append(
            Gate(
                "reproducible",
                GateState.PASS if diff <= tol else GateState.FAIL,
                diff,
                tol,
                f"retraining on the same data version moved predictions by up to {diff:.3g}",
            )
        )
    for c in spec.constraints:
        value = chosen.get(c.metric)
        name = f"constraint_{c.metric}"
        if value is None:
            gates.append(
                Gate(
                    name,
                    GateState.NOT_EVALUATED,
                    None,
                    c.max if c.max is not None else c.min,
                    f"{c.metric} was not measured",
                )
            )
            continue
        ok = (c.max is None or value <= c.max) and (c.min is None or value >= c.min)
        bound = f"<= {c.max}" if c.max is not None else f">= {c.min}"
        gates.append(
            Gate(
                name,
                GateState.PASS if ok else GateState.FAIL,
                value,
                c.max if c.max is not None else c.min,
                f"{c.metric} = {value:.3f}, must be {bound}",
            )
        )
    return gates


def render_html(evidence: dict[str, Any], digest: str) -> str:
    """The evidence bundle as a page a person can read; every value is escaped, the Pareto plot is inlined."""
    import base64
    from html import escape

    def e(v: Any) -> str:
        return escape(str(v))

    def cell(value: Any) -> str:
        return f"<td>{value:.4f}</td>" if isinstance(value, (int, float)) else "<td>-</td>"

    rows = "".join(
        f"<tr><td>{e(g['name'])}</td><td class='{e(g['state'])}'>{e(g['state'])}"
        f"{'' if g.get('blocking', True) else ' (evidence)'}</td><td>{e(g['detail'])}</td></tr>"
        for g in evidence["gates"]
    )
    cols = (
        "valid_auc",
        "test_auc",
        "test_logloss",
        "test_ece",
        "p95_latency_ms_per_1k",
        "model_size_kb",
        "n_trials",
        "train_seconds",
    )
    metrics = "".join(
        f"<tr><td>{e(name)}</td>" + "".join(cell(m.get(k)) for k in cols) + "</tr>"
        for name, m in evidence["metrics"].items()
    )
    champ = evidence.get("champion") or {}
    if champ.get("version"):
        metrics += (
            f"<tr><td>champion v{e(champ['version'])}</td><td>-</td>"
            + "".join(cell(champ.get(k)) for k in ("test_auc", "test_logloss", "test_ece"))
            + "<td>-</td>" * 4
            + "</tr>"
        )
    pareto = evidence.get("pareto") or {}
    plot = ""
    if pareto.get("plot"):  # named by the run: a missing file is an error, not a page without its plot
        data = base64.b64encode(storage.read_bytes(pareto["plot"], what="the run's Pareto plot")).decode()
        plot = f"<img alt='Pareto front' src='data:image/png;base64,{data}' style='max-width:640px'>"
    chosen = pareto.get("chosen") or {}
    slices = "".join(
        f"<tr><td>{e(col)}</td><td>{e(val)}</td><td>{r['rows']}</td>{cell(r['auc'])}"
        f"<td>{'yes' if r['counted'] else 'no'}</td></tr>"
        for col, t in (evidence.get("slices") or {}).items()
        for val, r in t["slices"].items()
    )
    drift = evidence.get("drift") or {}
    drift_html = (
        (
            f"<p>Drift share {e(drift.get('drift_share'))}, drifted: {e(drift.get('drifted_columns'))}. "
            f"Report: <code>{e(drift.get('html_path'))}</code></p>"
        )
        if drift
        else "<p>No drift report.</p>"
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>Evidence {e(evidence['training_run_id'])}"
        "</title><style>body{font:14px system-ui;margin:16px}td,th{padding:4px 8px;text-align:left}"
        ".pass{color:#1f7a3a}.fail{color:#b42318}.not_evaluated{color:#8a6d00}</style></head><body>"
        f"<h2>{e(evidence['model'])}: evidence for {e(evidence['training_run_id'])}</h2>"
        f"<p>Data version <code>{e(evidence['data_version'])}</code>, code <code>{e(evidence.get('code_version'))}"
        f"</code>, chosen <b>{e(evidence.get('candidate'))}</b> (trial {e(chosen.get('trial'))}), evidence SHA-256 "
        f"<code>{e(digest)}</code></p><h3>Gates ({'approvable' if evidence['approvable'] else 'not approvable'})"
        f"</h3><table><tr><th>Gate</th><th>State</th><th>Detail</th></tr>{rows}</table><h3>Candidates</h3><table>"
        "<tr><th>Candidate</th>" + "".join(f"<th>{e(c)}</th>" for c in cols) + f"</tr>{metrics}</table>"
        f"<h3>Pareto front: {e(pareto.get('size'))} of {e(pareto.get('trials'))} trials</h3>{plot}"
        "<h3>Slices (test rows)</h3><table><tr><th>Column</th><th>Slice</th><th>Rows</th><th>AUC</th>"
        f"<th>Counted</th></tr>{slices}</table><h3>Data drift (Evidently)</h3>{drift_html}</body></html>"
    )


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
    with engine.connect() as conn:
        cand = (
            conn.execute(
                select(model_candidates).where(model_candidates.c.training_run_id == training_run_id)
            )
            .one()
            ._mapping
        )
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
