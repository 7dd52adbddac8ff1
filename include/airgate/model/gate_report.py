"""The gate report: three-state gates (pass, fail, not evaluated), the metric gates judged against the spec, what
blocks, the evidence hash and the HTML an approver reads. ``gates`` adds the slice, drift and test-read gates."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from airgate.core import storage
from airgate.core.hashing import canonical_sha256
from airgate.core.spec import ModelSpec


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
