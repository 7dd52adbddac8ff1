"""Running a DAG in this process with ``dag.test()``: what the demo and the end-to-end tests do.

Airflow 3.3.2's ``dag.test()`` fails at the end of a *successful* run of a DAG that has a Deadline Alert: it builds
its scheduler DAG from the in-memory DAG, whose ``deadline`` holds the serialized alert definitions, while
``DagRun.update_state`` looks each one up as the id of a ``deadline_alert`` row ("'dict' object has no attribute
'hex'"). The scheduler reads the ids from the serialized DAG and is not affected. So the deadline is set aside
while ``dag.test()`` runs; ``tests/unit/orchestration/test_alerts.py`` drives the deadline itself through Airflow's own handling.
"""

from __future__ import annotations

from typing import Any


def dag_test(dag: Any, **kwargs: Any) -> Any:
    """``dag.test(**kwargs)`` without the DAG's deadline alerts for the call; returns the DagRun."""
    saved = dag.deadline
    dag.deadline = None
    try:
        return dag.test(**kwargs)
    finally:
        dag.deadline = saved
