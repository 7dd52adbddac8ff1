"""Scoring refuses a champion the audit log does not vouch for: a promote row forged into the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airgate.core.champion import LedgerTampered
from airgate.core.warehouse import promotion_ledger, utcnow
from airgate.serving import nightly, scoring


def test_a_forged_promote_row_is_refused_by_the_plan(
    engine: Any, spec: Any, mlflow_cfg: Any, tmp_path: Path
) -> None:
    with engine.begin() as conn:  # no approval, no audit event: straight into the table
        conn.execute(
            promotion_ledger.insert().values(
                model=spec.name,
                action="promote",
                to_version="1",
                approval_id="apr-x",
                actor="mallory",
                at=utcnow(),
            )
        )
    cfg = scoring.ScoreConfig(
        spec, mlflow_cfg, "2026-12-01", "sr-f", str(tmp_path / "runs"), model_version="1"
    )
    with pytest.raises(LedgerTampered, match="cannot be trusted"):
        nightly.plan_night(engine, cfg)
    with pytest.raises(LedgerTampered):
        scoring.resolve_champion(engine, spec, mlflow_cfg, "1")
