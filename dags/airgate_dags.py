"""Every airgate DAG, generated from the model specs in include/specs (one YAML file per model).

Adding a spec file adds its DAGs; no code changes. Wiring only, nothing heavy imported. A spec that does not load
costs only its own model: it is skipped here, and airgate_spec_errors.py (beside this file) reports it in Airflow's
DAG import errors, so that an import error never marks the other models' DAGs as broken. (Airflow's safe-mode
DagBag parses only files that mention both "airflow" and "dag": this sentence keeps that true.)
"""

from __future__ import annotations

import logging

from airgate.core.spec import load_catalog
from airgate.orchestration.builders import build_all

_catalog = load_catalog()
for _error in _catalog.errors:
    logging.getLogger(__name__).warning(
        "skipped: %s (see airgate_spec_errors.py in the DAG import errors)", _error
    )
for _spec in _catalog.specs:
    globals().update(build_all(_spec))
