"""Kept for deferred sensors stored before the layer packages: Airflow's trigger table holds this classpath."""

from airgate.orchestration.sensors import NewLandingFilesTrigger

__all__ = ["NewLandingFilesTrigger"]
