"""The whole model spec, ``ModelSpec``: the sections, and the rules that span several of them."""

from __future__ import annotations

import hashlib

from pydantic import ConfigDict, Field, field_validator, model_validator

from airgate.core.spec.sections import (
    NAME_RE,
    TUNING_METRICS,
    Alerts,
    Approval,
    Candidate,
    Cleaning,
    Constraint,
    Gates,
    Kubernetes,
    LabelPolicy,
    Monitoring,
    Objective,
    Privacy,
    Schema,
    Scoring,
    Slices,
    Source,
    Splits,
    Tuning,
    Validation,
    _Strict,
)


class ModelSpec(_Strict):
    name: str = Field(pattern=NAME_RE)
    owner: str
    description: str = ""
    source: Source
    data_schema: Schema = Field(alias="schema")
    cleaning: Cleaning = Cleaning()
    privacy: Privacy = Privacy()
    validation: Validation = Validation()
    label_policy: LabelPolicy = LabelPolicy()
    splits: Splits = Splits()
    candidates: list[Candidate]
    objectives: list[Objective] = Field(
        default_factory=lambda: [Objective(metric="auc", direction="maximize")]
    )
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
        named = [("objectives", o.metric) for o in self.objectives] + [
            ("constraints", c.metric) for c in self.constraints
        ]
        named.append(("tuning.select.metric", self.tuning.select.metric))
        for where, metric in named:
            if metric not in TUNING_METRICS:
                raise ValueError(f"{where}: unknown metric '{metric}'; use one of {list(TUNING_METRICS)}")
        if len({o.metric for o in self.objectives}) != len(self.objectives):
            raise ValueError("objectives: each metric may appear once")
        if self.scoring.pods and self.kubernetes is None:
            raise ValueError(
                "scoring.pods needs a 'kubernetes:' block (image, namespace) to run the pods with"
            )
        unknown = [c for c in self.privacy.pseudonymize if c not in self.data_schema.columns]
        if unknown:
            raise ValueError(f"privacy.pseudonymize: {unknown} are not declared in schema.columns")
        if self.data_schema.key in self.privacy.pseudonymize:
            raise ValueError(
                f"privacy.pseudonymize: the key column '{self.data_schema.key}' cannot be pseudonymised (late "
                "labels and review answers are joined on it); use an event id that carries no personal data"
            )
        if self.slices.by and not self.slices.roster:
            raise ValueError("slices.by needs slices.roster, the CSV that maps students to slices")
        if self.alerts.on_deadline_missed and self.scoring.deadline_minutes is None:
            raise ValueError(
                "alerts.on_deadline_missed names notifiers but scoring has no deadline: set "
                "scoring.deadline_minutes (minutes after the run's logical date)"
            )
        return self

    @property
    def spec_hash(self) -> str:
        payload = self.model_dump_json(by_alias=True).encode()
        return hashlib.sha256(payload).hexdigest()

    def dag_id(self, stage: str) -> str:
        return f"{self.name}__{stage}"

    def asset_uri(self, stage: str) -> str:
        return f"airgate://{self.name}/{stage}"
