"""The model spec: one YAML file declares a model, and every DAG for it is built from that file.

Loaded at DAG-parse time, so this module imports only pydantic and yaml. Validation happens here, at the boundary:
a bad spec never reaches a task. Errors name the file, the field and the fix, because the person reading them is a
data engineer who just edited YAML, not someone who wants a pydantic traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_RE = r"^[a-z][a-z0-9_]{1,62}$"
# Metrics every candidate reports on validation (tuning objectives, constraints, the selection rule).
TUNING_METRICS = ("auc", "logloss", "brier", "ece", "p95_latency_ms_per_1k", "model_size_kb")
DEFAULT_SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"


class SpecError(ValueError):
    """A spec that cannot be used. The message is written for the person who edits the YAML."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"invalid model spec {self.path}:"]
        for field, problem, fix in problems:
            lines.append(f"  - field '{field}': {problem}. Fix: {fix}")
        super().__init__("\n".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Where new interactions come from.

    ``landing_files``: a folder in airgate's storage (relative paths are under ``AIRGATE_STORAGE_URL``, by default
    ``$AIRGATE_HOME``), or any object-storage URI such as s3://bucket/landing/ (read through Airflow's
    ObjectStoragePath). ``sql``: a table behind any Airflow
    connection, read incrementally by a watermark column once at least ``min_new_rows`` new rows exist.
    """

    kind: Literal["landing_files", "sql"] = "landing_files"
    path: str = ""
    pattern: str = "*.csv"
    conn_id: str | None = None
    table: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
    watermark_column: str | None = None
    min_new_rows: int = Field(1, ge=1)
    poll_schedule: str = "*/10 * * * *"
    sensor_timeout_s: int = Field(600, ge=1)
    poke_interval_s: float = Field(30, gt=0)
    deferrable: bool = True  # wait in the triggerer, not in a worker slot

    @model_validator(mode="after")
    def _complete(self) -> Source:
        if self.kind == "landing_files" and not self.path:
            raise ValueError("a landing_files source needs 'path'")
        if self.kind == "sql" and not (self.conn_id and self.table and self.watermark_column):
            raise ValueError("a sql source needs 'conn_id', 'table' and 'watermark_column'")
        return self


class Schema(_Strict):
    key: str = "event_id"
    entity: str = "student_id"
    time: str = "ts"
    label: str = "correct"
    columns: dict[str, Literal["str", "int", "float", "datetime", "bool"]]

    @model_validator(mode="after")
    def _roles_are_columns(self) -> Schema:
        for role in ("key", "entity", "time", "label"):
            col = getattr(self, role)
            if col not in self.columns:
                raise ValueError(f"{role} column '{col}' is not declared in schema.columns")
        return self


class Cleaning(_Strict):
    min_response_time_ms: int = Field(0, ge=0)
    max_future_skew_s: int = Field(300, ge=0)
    earliest_ts: str = "2000-01-01T00:00:00+00:00"
    min_events_per_student: int = Field(1, ge=1)
    item_catalog: str | None = None  # CSV with item_id, skill_id: rows with unknown items or skills are quarantined


class Approvers(_Strict):
    users: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)


class Validation(_Strict):
    """Great Expectations checks on every clean version. Schema, keys, ranges and the catalog are critical;
    distribution shift against the previous version and near-duplicate columns are ``shift_severity``."""

    label_mean_shift: float = Field(0.1, gt=0)
    response_time_median_shift: float = Field(0.5, gt=0)  # relative change of the median
    skill_kl_divergence: float = Field(0.2, gt=0)
    max_unlabeled_fraction: float = Field(0.5, gt=0, le=1)
    duplicate_column_correlation: float = Field(0.99, gt=0, le=1)
    shift_severity: Literal["warning", "critical"] = "warning"


class LabelPolicy(_Strict):
    use_ground_truth: bool = True
    auto_label_min_confidence: float = Field(0.95, gt=0.5, le=1.0)
    review_budget: int = Field(0, ge=0)  # size of the open review queue (uncertainty sampling)
    late_labels_path: str | None = None  # CSV files (event_id, label) of grades that arrive afterwards
    reviews_path: str | None = None  # CSV files (event_id, label, reviewer) answering the review queue
    schedule: str | None = "0 * * * *"  # also run labeling on this cron, for late labels and review answers
    reviewers: Approvers | None = None  # who may answer the queue through the API (default: role user or above)


class Resources(_Strict):
    """Kubernetes requests for one pod (limits are set equal, so the pod is Guaranteed QoS)."""

    cpu: str = Field("1", pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    memory: str = Field("2Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")
    gpu: int = Field(0, ge=0)


class Kubernetes(_Strict):
    """When present, training candidates (and their tuning trials) run as pods through the cncf-kubernetes
    provider instead of on the Airflow worker. The image must contain this project (see the Dockerfile)."""

    image: str = Field(min_length=1)
    namespace: str = Field("airgate", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    service_account: str | None = None
    env_secret: str | None = None  # a Secret with AIRGATE_* and AIRFLOW_CONN_* variables, loaded as env
    gpu_resource: str = "nvidia.com/gpu"
    resources: Resources = Resources()  # default for every candidate pod
    startup_timeout_s: int = Field(600, ge=1)


class SearchParam(_Strict):
    """One tuned hyper-parameter: a numeric range, or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    type: Literal["int", "float", "categorical"] = "float"
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs 'choices'")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError("a numeric parameter needs 'low' <= 'high'")
        elif self.log and self.low <= 0:
            raise ValueError("a log-scale parameter needs 'low' > 0")
        return self


class Candidate(_Strict):
    name: str = Field(pattern=NAME_RE)
    kind: Literal["baseline", "lightgbm", "dkt"]
    params: dict[str, Any] = Field(default_factory=dict)  # fixed parameters (the starting point when tuned)
    search: dict[str, SearchParam] = Field(default_factory=dict)  # tuned by Optuna within these ranges
    n_trials: int | None = Field(None, ge=1)  # overrides tuning.n_trials for this candidate
    resources: Resources | None = None  # Kubernetes requests for this candidate's pod (overrides the default)

    @model_validator(mode="after")
    def _baseline_is_fixed(self) -> Candidate:
        if self.kind == "baseline" and self.search:
            raise ValueError("the baseline is not tuned: remove 'search'")
        return self


class Selection(_Strict):
    """How the final model is picked from every candidate's Pareto front: the best ``metric`` among the points
    that meet every constraint (``feasible``), or among all points (``all``)."""

    metric: str = "auc"
    direction: Literal["maximize", "minimize"] = "maximize"
    among: Literal["feasible", "all"] = "feasible"


class Tuning(_Strict):
    n_trials: int = Field(12, ge=1)
    sampler: Literal["tpe", "nsga2", "random"] = "tpe"
    seed: int = 42
    select: Selection = Selection()


class Slices(_Strict):
    """Slice metrics for the bias gate: a roster CSV (student_id + the ``by`` columns) joined at evaluation."""

    roster: str | None = None
    by: list[str] = Field(default_factory=list)
    min_rows: int = Field(100, ge=1)  # smaller slices are reported but do not count toward the gap


class Objective(_Strict):
    metric: str
    direction: Literal["maximize", "minimize"]


class Constraint(_Strict):
    metric: str
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _has_bound(self) -> Constraint:
        if self.max is None and self.min is None:
            raise ValueError("a constraint needs 'max' or 'min'")
        return self


class Splits(_Strict):
    train: float = Field(0.7, gt=0, lt=1)
    valid: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> Splits:
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + valid + test must be 1.0, got {total:.3f}")
        return self


class Gates(_Strict):
    beat_baseline_by: float = Field(0.01, ge=0)
    champion_tolerance: float = Field(0.005, ge=0)
    primary_metric: str = "auc"
    max_calibration_error: float = Field(0.05, gt=0, le=1)  # expected calibration error (10 bins) on the test set
    reproducibility_tolerance: float = Field(1e-9, ge=0)  # max |p1 - p2| between two trainings on the same data
    max_slice_gap: float = Field(0.1, gt=0, le=1)  # largest primary-metric gap between slices of one column
    max_drift_share: float = Field(0.5, gt=0, le=1)  # share of drifted features (Evidently) that counts as drift
    drift_blocking: bool = False  # drift is evidence by default; a gate that can fail when true


class Approval(_Strict):
    approvers: Approvers
    quorum: int = Field(1, ge=1)
    expires_after_hours: float = Field(72, gt=0)
    # Who may revoke the champion in an emergency (break-glass): scoring stops until a version is approved or
    # rolled back to. Deliberately narrower than the approvers by default.
    break_glass: Approvers = Field(default_factory=lambda: Approvers(roles=["admin"]))

    @model_validator(mode="after")
    def _someone_can_approve(self) -> Approval:
        if not self.approvers.users and not self.approvers.roles:
            raise ValueError("no approvers: name at least one user or role")
        if self.approvers.users and not self.approvers.roles and self.quorum > len(self.approvers.users):
            raise ValueError(f"quorum {self.quorum} exceeds the {len(self.approvers.users)} listed approvers")
        return self


class Monitoring(_Strict):
    """What turns a scoring run into an alarm. Drift: the share of drifted columns (features and the score) between
    the champion's validation split and the rows just scored. Decay: the AUC on recent predictions whose labels came
    in, fallen below the AUC at approval by more than ``max_auc_drop``."""

    max_drift_share: float = Field(0.5, gt=0, le=1)
    max_auc_drop: float = Field(0.05, gt=0, le=1)
    min_labeled_rows: int = Field(200, ge=10)  # decay is not evaluated on fewer labeled predictions
    decay_window_partitions: int = Field(7, ge=1)  # decay looks at the champion's newest published partitions
    max_rows: int = Field(20_000, ge=500)  # rows sampled per side for the drift report
    # Also retrain on this cron (e.g. weekly), alarm or not; None: only new labels and alarms start training.
    retrain_schedule: str | None = Field(None, pattern=r"^(@(hourly|daily|weekly|monthly|yearly)|(\S+\s+){4}\S+)$")


DOTTED_PATH_RE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
ALERT_KINDS = ("failure", "deadline_missed", "drift", "decay")


class AlertTarget(_Strict):
    """One notifier or callback, named by its dotted import path and imported only when an alert is sent, never
    at DAG parse. A class (any ``BaseNotifier`` subclass, e.g.
    ``airflow.providers.smtp.notifications.smtp.SmtpNotifier``) is built with ``kwargs`` and called with the
    context; a function is called with ``kwargs`` and ``context=`` when it takes one. A bare string is short for
    ``{notifier: <path>}``."""

    notifier: str = Field(pattern=DOTTED_PATH_RE)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"notifier": value} if isinstance(value, str) else value

    @field_validator("kwargs")
    @classmethod
    def _plain_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "context" in value:
            raise ValueError("'context' is reserved: Airflow passes the context itself; remove it from kwargs")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValueError("kwargs must be plain values (strings, numbers, booleans, lists, mappings); "
                             f"quote dates and times ({exc})") from exc
        return value


class Alerts(_Strict):
    """Who hears about what. Every alert sent is an ``alert_sent`` audit event, every notifier that fails an
    ``alert_failed`` one; a failing notifier does not stop the others."""

    on_failure: list[AlertTarget] = Field(default_factory=list)  # a task of any of the model's DAGs failed
    on_deadline_missed: list[AlertTarget] = Field(default_factory=list)  # scoring not done by its deadline
    on_drift: list[AlertTarget] = Field(default_factory=list)  # a drift alarm after scoring
    on_decay: list[AlertTarget] = Field(default_factory=list)  # a decay alarm (accuracy on labeled predictions)

    def targets(self, kind: str) -> list[AlertTarget]:
        if kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {kind!r}; one of {list(ALERT_KINDS)}")
        return list(getattr(self, f"on_{kind}"))


class Scoring(_Strict):
    """Nightly batch scoring. The rows are split by student into ``partitions``, each scored by one mapped task
    (or, with ``pods: true``, one Kubernetes pod from the spec's ``kubernetes:`` block) in chunks of
    ``chunk_rows``, so a worker's memory depends on the chunk, not on the night's volume."""

    schedule: str = "0 2 * * *"
    destination: str = Field("predictions", pattern=NAME_RE)
    chunk_rows: int = Field(50_000, ge=100)
    partitions: int = Field(2, ge=1, le=256)
    pods: bool = False
    resources: Resources | None = None  # per scoring pod; default: kubernetes.resources
    # The deadline (SLA): a run not finished this many minutes after its logical date (the cron tick) or after it
    # was queued calls alerts.on_deadline_missed. None: no deadline.
    deadline_minutes: int | None = Field(None, ge=1)
    deadline_from: Literal["logical_date", "queued_at"] = "logical_date"


class ModelSpec(_Strict):
    name: str = Field(pattern=NAME_RE)
    owner: str
    description: str = ""
    source: Source
    data_schema: Schema = Field(alias="schema")
    cleaning: Cleaning = Cleaning()
    validation: Validation = Validation()
    label_policy: LabelPolicy = LabelPolicy()
    splits: Splits = Splits()
    candidates: list[Candidate]
    objectives: list[Objective] = Field(default_factory=lambda: [Objective(metric="auc", direction="maximize")])
    constraints: list[Constraint] = Field(default_factory=list)
    tuning: Tuning = Tuning()
    slices: Slices = Slices()
    gates: Gates = Gates()
    approval: Approval
    scoring: Scoring = Scoring()
    monitoring: Monitoring = Monitoring()
    alerts: Alerts = Alerts()
    kubernetes: Kubernetes | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, v: list[Candidate]) -> list[Candidate]:
        kinds = [c.kind for c in v]
        if "baseline" not in kinds:
            raise ValueError("a 'baseline' candidate is required: every model is gated against it")
        if not any(k != "baseline" for k in kinds):
            raise ValueError("at least one non-baseline candidate is required")
        names = [c.name for c in v]
        if len(set(names)) != len(names):
            raise ValueError("candidate names must be unique")
        return v

    @model_validator(mode="after")
    def _known_metrics(self) -> ModelSpec:
        named = [("objectives", o.metric) for o in self.objectives] + [("constraints", c.metric)
                                                                          for c in self.constraints]
        named.append(("tuning.select.metric", self.tuning.select.metric))
        for where, metric in named:
            if metric not in TUNING_METRICS:
                raise ValueError(f"{where}: unknown metric '{metric}'; use one of {list(TUNING_METRICS)}")
        if len({o.metric for o in self.objectives}) != len(self.objectives):
            raise ValueError("objectives: each metric may appear once")
        if self.scoring.pods and self.kubernetes is None:
            raise ValueError("scoring.pods needs a 'kubernetes:' block (image, namespace) to run the pods with")
        if self.slices.by and not self.slices.roster:
            raise ValueError("slices.by needs slices.roster, the CSV that maps students to slices")
        if self.alerts.on_deadline_missed and self.scoring.deadline_minutes is None:
            raise ValueError("alerts.on_deadline_missed names notifiers but scoring has no deadline: set "
                             "scoring.deadline_minutes (minutes after the run's logical date)")
        return self

    @property
    def spec_hash(self) -> str:
        payload = self.model_dump_json(by_alias=True).encode()
        return hashlib.sha256(payload).hexdigest()

    def dag_id(self, stage: str) -> str:
        return f"{self.name}__{stage}"

    def asset_uri(self, stage: str) -> str:
        return f"airgate://{self.name}/{stage}"


_FIXES: dict[str, str] = {
    "missing": "add the field",
    "extra_forbidden": "remove it, or check its spelling against the documented fields",
    "string_pattern_mismatch": "use lowercase letters, digits and '_' and start with a letter",
    "literal_error": "use one of the allowed values",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than": "use a smaller value",
    "less_than_equal": "use a smaller value",
    "int_parsing": "write a whole number",
    "float_parsing": "write a number",
}


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _problems(err: ValidationError) -> list[tuple[str, str, str]]:
    out = []
    for e in err.errors():
        msg = re.sub(r"^Value error, ", "", e["msg"])
        fix = _FIXES.get(e["type"], "correct the value as the message says")
        if e["type"] == "string_pattern_mismatch" and e["loc"] and e["loc"][-1] in ("cpu", "memory"):
            fix = "use a Kubernetes quantity such as '500m' or '2' (cpu), '512Mi' or '4Gi' (memory)"
        if e["type"] == "string_pattern_mismatch" and e["loc"] and e["loc"][-1] == "retrain_schedule":
            fix = "use a cron expression with five fields, such as '0 3 * * 0' (Sundays 03:00 UTC), or remove it"
        if e["type"] == "string_pattern_mismatch" and e["loc"] and e["loc"][-1] == "notifier":
            fix = ("write the dotted import path of a notifier class or callback function, such as "
                   "'airgate.notifiers.LogNotifier' or 'airflow.providers.smtp.notifications.smtp.SmtpNotifier'")
        if e["type"] == "literal_error" and "expected" in e.get("ctx", {}):
            fix = f"use one of {e['ctx']['expected']}"
        out.append((_field_path(tuple(e["loc"])), msg, fix))
    return out


def load_spec(path: Path | str) -> ModelSpec:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(unknown line)"
        raise SpecError(path, [(where, f"not valid YAML ({exc})", "fix the YAML syntax")]) from exc
    except OSError as exc:
        raise SpecError(path, [("(file)", f"cannot read: {exc}", "check the path and permissions")]) from exc
    if not isinstance(raw, dict):
        raise SpecError(path, [("(top level)", "the spec must be a mapping", "start with 'name: <model>'")])
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(path, _problems(exc)) from exc
    if spec.name != path.stem:
        raise SpecError(path, [("name", f"'{spec.name}' differs from the file name '{path.stem}'",
                                f"rename the file to {spec.name}.yaml or set name: {path.stem}")])
    return spec


def specs_dir() -> Path:
    return Path(os.environ.get("AIRGATE_SPECS_DIR", DEFAULT_SPECS_DIR))


def load_specs(directory: Path | str | None = None) -> list[ModelSpec]:
    """Every *.yaml under the specs folder, sorted by name. One bad file fails loudly, naming itself."""
    folder = Path(directory) if directory is not None else specs_dir()
    return [load_spec(p) for p in sorted(folder.glob("*.yaml"))]


def find_spec(name: str, directory: Path | str | None = None) -> ModelSpec:
    folder = Path(directory) if directory is not None else specs_dir()
    return load_spec(folder / f"{name}.yaml")
