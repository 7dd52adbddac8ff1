"""Validation gates with three states: pass, fail, not evaluated. An absent or unevaluated gate is never a pass.

The gate report is the evidence bundle an approver reads. Its SHA-256 is recorded with the candidate and with the
approval request, so a decision can prove which evidence it was made on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from airgate import audit, governance, registry
from airgate.features import FEATURES
from airgate.spec import ModelSpec
from airgate.warehouse import model_candidates

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
        return [f"{g.name}: {g.detail}" for g in self.gates
                if g.state == GateState.FAIL or (g.state == GateState.NOT_EVALUATED and g.blocking_if_not_evaluated)]


def evidence_hash(evidence: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(evidence, sort_keys=True, separators=(",", ":"), default=str)
                          .encode()).hexdigest()


def evaluate_gates(spec: ModelSpec, chosen: dict[str, float], baseline: dict[str, float],
                   champion_auc: float | None, champion_version: str | None) -> list[Gate]:
    metric = f"test_{spec.gates.primary_metric}"
    gates: list[Gate] = []
    if metric in chosen and metric in baseline:
        lift = chosen[metric] - baseline[metric]
        ok = lift >= spec.gates.beat_baseline_by
        gates.append(Gate("beats_baseline", GateState.PASS if ok else GateState.FAIL, lift, spec.gates.beat_baseline_by,
                          f"{metric} {chosen[metric]:.4f} vs baseline {baseline[metric]:.4f} (lift {lift:+.4f})"))
    else:
        gates.append(Gate("beats_baseline", GateState.NOT_EVALUATED, None, spec.gates.beat_baseline_by,
                          f"{metric} missing for the candidate or the baseline"))
    if champion_auc is None:
        gates.append(Gate("no_worse_than_champion", GateState.NOT_EVALUATED, None, spec.gates.champion_tolerance,
                          "no approved champion yet", blocking_if_not_evaluated=False))
    else:
        drop = champion_auc - chosen.get("test_auc", float("nan"))
        ok = bool(drop <= spec.gates.champion_tolerance)
        gates.append(Gate("no_worse_than_champion", GateState.PASS if ok else GateState.FAIL, -drop,
                          -spec.gates.champion_tolerance,
                          f"test_auc {chosen.get('test_auc', float('nan')):.4f} vs champion v{champion_version} "
                          f"{champion_auc:.4f} on the same test rows"))
    ece = chosen.get("test_ece")
    limit = spec.gates.max_calibration_error
    if ece is None:
        gates.append(Gate("calibration", GateState.NOT_EVALUATED, None, limit, "test_ece was not measured"))
    else:
        gates.append(Gate("calibration", GateState.PASS if ece <= limit else GateState.FAIL, ece, limit,
                          f"expected calibration error {ece:.4f}, must be <= {limit}"))
    diff = chosen.get("repro_max_abs_diff")
    tol = spec.gates.reproducibility_tolerance
    if diff is None:
        gates.append(Gate("reproducible", GateState.NOT_EVALUATED, None, tol,
                          "the candidate was not retrained on the same data version"))
    else:
        gates.append(Gate("reproducible", GateState.PASS if diff <= tol else GateState.FAIL, diff, tol,
                          f"retraining on the same data version moved predictions by up to {diff:.3g}"))
    for c in spec.constraints:
        value = chosen.get(c.metric)
        name = f"constraint_{c.metric}"
        if value is None:
            gates.append(Gate(name, GateState.NOT_EVALUATED, None, c.max if c.max is not None else c.min,
                              f"{c.metric} was not measured"))
            continue
        ok = (c.max is None or value <= c.max) and (c.min is None or value >= c.min)
        bound = f"<= {c.max}" if c.max is not None else f">= {c.min}"
        gates.append(Gate(name, GateState.PASS if ok else GateState.FAIL, value,
                          c.max if c.max is not None else c.min, f"{c.metric} = {value:.3f}, must be {bound}"))
    return gates


def render_html(evidence: dict[str, Any], digest: str) -> str:
    """The evidence bundle as a page a person can read; every value is escaped."""
    from html import escape

    rows = "".join(
        f"<tr><td>{escape(str(g['name']))}</td><td class='{escape(str(g['state']))}'>{escape(str(g['state']))}</td>"
        f"<td>{escape(str(g['detail']))}</td></tr>" for g in evidence["gates"])
    def cell(value: Any) -> str:
        return f"<td>{value:.4f}</td>" if isinstance(value, (int, float)) else "<td>-</td>"

    metrics = "".join(
        f"<tr><td>{escape(str(name))}</td>" + "".join(cell(m.get(k)) for k in ("test_auc", "test_logloss", "test_ece"))
        + "</tr>" for name, m in evidence["metrics"].items())
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Evidence {escape(evidence['training_run_id'])}"
            "</title><style>body{font:14px system-ui;margin:16px}td,th{padding:4px 8px;text-align:left}"
            ".pass{color:#1f7a3a}.fail{color:#b42318}.not_evaluated{color:#8a6d00}</style></head><body>"
            f"<h2>{escape(evidence['model'])}: evidence for {escape(evidence['training_run_id'])}</h2>"
            f"<p>Data version <code>{escape(str(evidence['data_version']))}</code>, code "
            f"<code>{escape(str(evidence.get('code_version')))}</code>, evidence SHA-256 <code>{escape(digest)}</code>"
            f"</p><h3>Gates ({'approvable' if evidence['approvable'] else 'not approvable'})</h3><table>"
            f"<tr><th>Gate</th><th>State</th><th>Detail</th></tr>{rows}</table><h3>Candidates</h3><table>"
            f"<tr><th>Candidate</th><th>Test AUC</th><th>Log-loss</th><th>ECE</th></tr>{metrics}</table>"
            "</body></html>")


def _champion_auc(engine: Engine, spec: ModelSpec, cfg: registry.MlflowConfig,
                  test_pred: pd.DataFrame, data_version: str) -> tuple[float | None, str | None]:
    """Score the champion on exactly the candidate's test rows, through the scoring feature path."""
    champ = governance.current_champion(engine, spec.name)
    if champ is None:
        return None, None
    from sklearn.metrics import roc_auc_score

    from airgate.train import training_frame

    frame = training_frame(engine, spec, data_version)
    frame = frame[frame["event_id"].isin(set(test_pred["event_id"]))]
    booster = registry.load_booster(cfg, spec.name, champ.version)
    p = booster.predict(frame[FEATURES])
    return float(roc_auc_score(frame["label"].to_numpy(), np.asarray(p))), champ.version


def validate(engine: Engine, spec: ModelSpec, cfg: registry.MlflowConfig, training_run_id: str,
             runs_dir: str, actor: str = "airflow") -> GateReport:
    with engine.connect() as conn:
        cand = conn.execute(select(model_candidates)
                            .where(model_candidates.c.training_run_id == training_run_id)).one()._mapping
    m = cand["metrics"]
    chosen_name = m["chosen"]
    baseline_name = next(c.name for c in spec.candidates if c.kind == "baseline")
    test_pred = pd.read_csv(m["test_predictions"])
    champion_auc, champion_version = _champion_auc(engine, spec, cfg, test_pred, cand["data_version"])
    gates = evaluate_gates(spec, m["candidates"][chosen_name], m["candidates"][baseline_name], champion_auc,
                           champion_version)
    approvable = all(g.state == GateState.PASS or (g.state == GateState.NOT_EVALUATED and
                                                   not g.blocking_if_not_evaluated) for g in gates)
    evidence = {
        "model": spec.name, "training_run_id": training_run_id, "data_version": cand["data_version"],
        "trained_by": cand["trained_by"], "mlflow_run_id": cand["mlflow_run_id"], "model_uri": m["model_uri"],
        "candidate": chosen_name, "metrics": m["candidates"], "rows": m["rows"],
        "champion": {"version": champion_version, "test_auc": champion_auc},
        "gates": [asdict(g) for g in gates], "approvable": approvable, "spec_hash": spec.spec_hash,
        "code_version": m.get("code_version", "unknown"),
    }
    digest = evidence_hash(evidence)
    out = Path(runs_dir) / training_run_id / "gate_report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"evidence": evidence, "evidence_hash": digest}, indent=2, default=str))
    (out.parent / "gate_report.html").write_text(render_html(evidence, digest))
    report = GateReport(spec.name, training_run_id, approvable, gates, evidence, digest)
    with engine.begin() as conn:
        conn.execute(update(model_candidates).where(model_candidates.c.training_run_id == training_run_id).values(
            gate_report=json.loads(json.dumps(evidence, default=str)), evidence_hash=digest,
            status="gates_passed" if approvable else "gates_failed"))
        audit.append(conn, actor=actor, event_type="gate", model=spec.name,
                     entity={"training_run_id": training_run_id, "evidence_hash": digest},
                     details={"approvable": approvable, "failures": report.failures,
                              "gates": {g.name: g.state.value for g in gates}})
    log.info("gates for %s: %s", training_run_id, {g.name: g.state.value for g in gates})
    return report


def register_and_request(engine: Engine, spec: ModelSpec, cfg: registry.MlflowConfig, training_run_id: str,
                         actor: str = "airflow") -> dict[str, str]:
    """Register the gated candidate in MLflow and open its approval request. Idempotent per training run."""
    with engine.connect() as conn:
        cand = conn.execute(select(model_candidates)
                            .where(model_candidates.c.training_run_id == training_run_id)).one()._mapping
    if cand["status"] not in ("gates_passed", "registered"):
        raise governance.GovernanceError("not_approvable", 409,
                                         f"training run {training_run_id} did not pass its gates ({cand['status']})")
    version = cand["model_version"]
    if version is None:
        m = cand["metrics"]
        version = registry.register(cfg, spec.name, m["model_uri"], {
            "airgate.training_run_id": training_run_id, "airgate.data_version": cand["data_version"],
            "airgate.evidence_hash": cand["evidence_hash"], "airgate.spec_hash": spec.spec_hash,
            "airgate.trained_by": cand["trained_by"], "airgate.code_version": m.get("code_version", "unknown")})
        with engine.begin() as conn:
            conn.execute(update(model_candidates).where(model_candidates.c.training_run_id == training_run_id)
                         .values(model_version=version, status="registered"))
            audit.append(conn, actor=actor, event_type="register", model=spec.name,
                         entity={"training_run_id": training_run_id, "model_version": version},
                         details={"model_uri": m["model_uri"]})
    request_id = governance.open_request(engine, spec, version, training_run_id, cand["gate_report"],
                                         cand["evidence_hash"], cand["trained_by"])
    return {"model_version": str(version), "approval_request_id": request_id}
