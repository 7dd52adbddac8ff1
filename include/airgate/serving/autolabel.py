"""The approved champion as the label DAG's auto-labeler.

Here, above governance and model, because it asks the promotion ledger which version is the champion and loads
that version's predictor; ``airgate.data.labeling`` only receives the result (a ``labeling.Predictor``), so the
data layer never imports the layers above it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from airgate.core.spec import ModelSpec
from airgate.data.labeling import Predictor
from airgate.governance import promotion


def champion_predictor(engine: Engine, spec: ModelSpec, mlflow_cfg: Any) -> Predictor | None:
    """The approved champion (per the promotion ledger) as an auto-labeler, or None before the first approval."""
    champ = promotion.current_champion(engine, spec.name)
    if champ is None:
        return None
    from airgate.model import predictors

    return Predictor(champ.version, predictors.load_version(mlflow_cfg, spec.name, champ.version).predict)
