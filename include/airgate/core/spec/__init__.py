"""The model spec: one YAML file declares a model, and every DAG for it is built from that file.

Loaded at DAG-parse time, so this package imports only pydantic, yaml and croniter. Validation happens here, at the
boundary: a bad spec never reaches a task. Errors name the file, the field and the fix, because the person reading
them is a data engineer who just edited YAML, not someone who wants a pydantic traceback.

``sections`` holds the parts of a spec, ``model`` the whole, ``schedules`` the cron check and ``loading`` the
reading of files and folders.
"""

from airgate.core.spec.loading import (
    DEFAULT_SPECS_DIR,
    SpecCatalog,
    SpecError,
    find_spec,
    load_catalog,
    load_spec,
    load_specs,
    specs_dir,
)
from airgate.core.spec.model import ModelSpec
from airgate.core.spec.sections import (
    ALERT_KINDS,
    NAME_RE,
    TUNING_METRICS,
    Alerts,
    AlertTarget,
    Approval,
    Approvers,
    Candidate,
    Cleaning,
    Constraint,
    Gates,
    Kubernetes,
    LabelPolicy,
    Monitoring,
    Objective,
    Privacy,
    Resources,
    Schema,
    Scoring,
    SearchParam,
    Selection,
    Slices,
    Source,
    Splits,
    Tuning,
    Validation,
)

__all__ = [
    "ALERT_KINDS",
    "DEFAULT_SPECS_DIR",
    "NAME_RE",
    "TUNING_METRICS",
    "AlertTarget",
    "Alerts",
    "Approval",
    "Approvers",
    "Candidate",
    "Cleaning",
    "Privacy",
    "Constraint",
    "Gates",
    "Kubernetes",
    "LabelPolicy",
    "ModelSpec",
    "Monitoring",
    "Objective",
    "Resources",
    "Schema",
    "Scoring",
    "SearchParam",
    "Selection",
    "Slices",
    "Source",
    "SpecCatalog",
    "SpecError",
    "Splits",
    "Tuning",
    "Validation",
    "find_spec",
    "load_catalog",
    "load_spec",
    "load_specs",
    "specs_dir",
]
