"""One module per DAG kind (``build(spec) -> DAG``), plus ``common``: what every DAG of a model shares.

Wiring only: each task body calls one stage function and translates its typed outcome into an Airflow skip or
failure, or a small JSON XCom. ``airgate.orchestration.builders.build_all`` puts them together.
"""
