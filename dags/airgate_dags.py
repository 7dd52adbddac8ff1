"""Every airgate DAG, generated from the model specs in include/specs (one YAML file per model).

Adding a spec file adds its DAGs; no code changes. Wiring only, nothing heavy imported. (Airflow's safe-mode
DagBag parses only files that mention both "airflow" and "dag": this sentence keeps that true.)
"""

from __future__ import annotations

from airgate.dagfactory import build_all
from airgate.spec import load_specs

for _spec in load_specs():
    globals().update(build_all(_spec))
