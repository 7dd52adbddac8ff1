"""Kept for deadlines recorded before the layer packages: Airflow's deadline rows hold this callback path."""

from airgate.orchestration.alerts import deadline_missed

__all__ = ["deadline_missed"]
