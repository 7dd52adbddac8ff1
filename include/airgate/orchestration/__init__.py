"""Airflow's side: DAG builders (wiring only), sensors and triggers, Kubernetes pods, alerts, notifiers, the
CLI."""
