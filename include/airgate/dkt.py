"""Kept for DKT models logged before the layer packages: their MLflow code file imports ``airgate.dkt``."""

from airgate.model.dkt import DKTPyfunc

__all__ = ["DKTPyfunc"]
