"""The model specs that do not load, as Airflow DAG import errors (the UI's "DAG import errors"): each names its
spec file, the field and the fix.

This file defines no DAG. Airflow marks every DAG of a file that has an import error as broken and stops
scheduling it, so the error must not come from airgate_dags.py, which holds the DAGs of the specs that do load.
Cheap: it reads the YAML files and nothing else.
"""

from __future__ import annotations

from airgate.core.spec import load_catalog
from airgate.core.spec.loading import BrokenSpecs

_errors = load_catalog().errors
if _errors:
    raise BrokenSpecs(_errors)
