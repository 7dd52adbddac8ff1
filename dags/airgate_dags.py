"""Every airgate DAG, generated from the model specs in include/specs (one YAML file per model).

Adding a spec file adds its DAGs; no code changes. Wiring only, nothing heavy imported. (Airflow's safe-mode
DagBag parses only files that mention both "airflow" and "dag": this sentence keeps that true.)
"""

from __future__ import annotations

from airgate.core.spec import load_specs
from airgate.orchestration.builders import build_all

for _spec in load_specs():
    globals().update(build_all(_spec))
