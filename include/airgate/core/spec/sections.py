"""The sections of a model spec: where data comes from, how it is cleaned, checked and labeled, which candidates
are trained and tuned, the gates, approval, scoring, monitoring and alerts. Pydantic only: loaded at DAG-parse time.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airgate.core.spec.schedules import Schedule

NAME_RE = r"^[a-z][a-z0-9_]{1,62}$"
# Metrics every candidate reports on validation (tuning objectives, constraints, the selection rule).
TUNING_METRICS = ("auc", "logloss", "brier", "ece", "p95_latency_ms_per_1k", "model_size_kb")


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
    poll_schedule: Schedule = "*/10 * * * *"
    sensor_timeout_s: int = Field(600, ge=1)
    poke_interval_s: float = Field(30, gt=0)
    deferrable: bool = True  # wait in the triggerer, not in a worker slot
    # sql: each read starts this far behind the stored watermark, in the watermark column's units (seconds for a
    # timestamp or date column), and drops the keys already read: rows committed late or backdated are not lost.
    lookback: float = Field(3600, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> Source:
        if self.kind == "landing_files" and not self.path:
            raise ValueError("a landing_files source needs 'path'")
        if self.kind == "sql" and not (self.conn_id and self.table and self.watermark_column):
            raise ValueError("a sql source needs 'conn_id', 'table' and 'watermark_column'")
        return self


class Schema(_Strict):
    """The landing data's columns and the role each plays. Cleaning reads the key, entity, time and label through
    these roles, so a source may name them as it likes. ``naive_timezone`` is the IANA zone a timestamp without an
    offset is read in, value by value (a value with an offset keeps its own)."""

    key: str = "event_id"
    entity: str = "student_id"
    time: str = "ts"
    label: str = "correct"
    columns: dict[str, Literal["str", "int", "float", "datetime", "bool"]]
    naive_timezone: str = "UTC"

    @field_validator("naive_timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone '{v}': use an IANA name such as UTC or Europe/Paris"
            ) from exc
        return v

    @model_validator(mode="after")
    def _roles_are_columns(self) -> Schema:
        for role in ("key", "entity", "time", "label"):
            col = getattr(self, role)
            if col not in self.columns:
                raise ValueError(f"{role} column '{col}' is not declared in schema.columns")
        return self


class Privacy(_Strict):
    """De-identification at ingest. Each column named in ``pseudonymize`` (the entity column is always among them
    when the list is not empty) is replaced by a keyed HMAC-SHA256 pseudonym before anything is stored; the key is
    the password of the Airflow connection ``key_conn_id`` (or a secrets backend entry of that name). The roster is
    joined on the same pseudonym. ``retention_days``: raw rows and landing files older than this are purged
    (audited; their hashes stay, so lineage still resolves)."""

    pseudonymize: list[str] = Field(default_factory=list)
    key_conn_id: str = "airgate_pseudonym_key"
    retention_days: int | None = Field(None, ge=1)


class Cleaning(_Strict):
    min_response_time_ms: int = Field(0, ge=0)
    max_future_skew_s: int = Field(300, ge=0)
    earliest_ts: str = "2000-01-01T00:00:00+00:00"
    min_events_per_student: int = Field(1, ge=1)
    item_catalog: str | None = (
        None  # CSV with item_id, skill_id: rows with unknown items or skills are quarantined
    )


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
    # Shift checks compare a version with the newest earlier validated one; versions with fewer rows than this
    # (a fix-up file, a trickle) are neither compared nor used as the reference: their means are noise.
    min_rows_for_shift: int = Field(1000, ge=1)


class LabelPolicy(_Strict):
    use_ground_truth: bool = True
    auto_label_min_confidence: float = Field(0.95, gt=0.5, le=1.0)
    review_budget: int = Field(0, ge=0)  # size of the open review queue (uncertainty sampling)
    late_labels_path: str | None = None  # CSV files (event_id, label) of grades that arrive afterwards
    reviews_path: str | None = None  # CSV files (event_id, label, reviewer) answering the review queue
    schedule: Schedule | None = (
        "0 * * * *"  # also run labeling on this cron, for late labels and review answers
    )
    reviewers: Approvers | None = (
        None  # who may answer the queue through the API (default: role user or above)
    )


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
    max_calibration_error: float = Field(
        0.05, gt=0, le=1
    )  # expected calibration error (10 bins) on the test set
    reproducibility_tolerance: float = Field(
        1e-9, ge=0
    )  # max |p1 - p2| between two trainings on the same data
    max_slice_gap: float = Field(0.1, gt=0, le=1)  # largest primary-metric gap between slices of one column
    max_drift_share: float = Field(
        0.5, gt=0, le=1
    )  # share of drifted features (Evidently) that counts as drift
    drift_blocking: bool = False  # drift is evidence by default; a gate that can fail when true


class Approval(_Strict):
    approvers: Approvers
    quorum: int = Field(1, ge=1)
    expires_after_hours: float = Field(72, gt=0)
    # Who may revoke the champion in an emergency (break-glass): scoring stops until a version is approved or
    # rolled back to. Deliberately narrower than the approvers by default.
    break_glass: Approvers = Field(default_factory=lambda: Approvers(roles=["admin"]))
    # role -> how many distinct approvers holding it must approve, on top of the head count ``quorum``
    required_roles: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _someone_can_approve(self) -> Approval:
        if not self.approvers.users and not self.approvers.roles:
            raise ValueError("no approvers: name at least one user or role")
        if self.approvers.users and not self.approvers.roles and self.quorum > len(self.approvers.users):
            raise ValueError(f"quorum {self.quorum} exceeds the {len(self.approvers.users)} listed approvers")
        return self

    @field_validator("required_roles")
    @classmethod
    def _roles_lower_cased(cls, required: dict[str, int]) -> dict[str, int]:
        return _role_quorum(required)


def _role_quorum(required: dict[str, int]) -> dict[str, int]:
    """``approval.required_roles`` checked and lower-cased (roles are compared lower-cased, as auth reports them)."""
    out: dict[str, int] = {}
    for role, n in required.items():
        name = role.strip().lower()
        if not name:
            raise ValueError(
                "approval.required_roles: a role name is empty; fix: name the role, e.g. {risk: 1}"
            )
        if n < 1:
            raise ValueError(
                f"approval.required_roles.{name}: {n} approvers is not a requirement; fix: use 1 or more, "
                "or remove the role"
            )
        out[name] = out.get(name, 0) + n
    return out


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
    retrain_schedule: Schedule | None = None


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
            raise ValueError(
                "'context' is reserved: Airflow passes the context itself; remove it from kwargs"
            )
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "kwargs must be plain values (strings, numbers, booleans, lists, mappings); "
                f"quote dates and times ({exc})"
            ) from exc
        return value


class Alerts(_Strict):
    """Who hears about what. Every alert sent is an ``alert_sent`` audit event, every notifier that fails an
    ``alert_failed`` one; a failing notifier does not stop the others."""

    on_failure: list[AlertTarget] = Field(default_factory=list)  # a task of any of the model's DAGs failed
    on_deadline_missed: list[AlertTarget] = Field(default_factory=list)  # scoring not done by its deadline
    on_drift: list[AlertTarget] = Field(default_factory=list)  # a drift alarm after scoring
    on_decay: list[AlertTarget] = Field(
        default_factory=list
    )  # a decay alarm (accuracy on labeled predictions)
    on_governance: list[AlertTarget] = Field(default_factory=list)  # approvals, rollbacks, break-glass
    expiry_warning_fraction: float = Field(0.1, gt=0, lt=1)  # "about to expire": this share of life left

    def targets(self, kind: str) -> list[AlertTarget]:
        if kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {kind!r}; one of {list(ALERT_KINDS)}")
        return list(getattr(self, f"on_{kind}"))


class Scoring(_Strict):
    """Nightly batch scoring. The rows are split by student into ``partitions``, each scored by one mapped task
    (or, with ``pods: true``, one Kubernetes pod from the spec's ``kubernetes:`` block) in chunks of
    ``chunk_rows``, so a worker's memory depends on the chunk, not on the night's volume."""

    schedule: Schedule = "0 2 * * *"
    destination: str = Field("predictions", pattern=NAME_RE)
    chunk_rows: int = Field(50_000, ge=100)
    partitions: int = Field(2, ge=1, le=256)
    pods: bool = False
    resources: Resources | None = None  # per scoring pod; default: kubernetes.resources
    # The deadline (SLA): a run not finished this many minutes after its logical date (the cron tick) or after it
    # was queued calls alerts.on_deadline_missed. None: no deadline.
    deadline_minutes: int | None = Field(None, ge=1)
    deadline_from: Literal["logical_date", "queued_at"] = "logical_date"
