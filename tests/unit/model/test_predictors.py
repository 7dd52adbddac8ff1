"""How scoring cost is measured: a busy machine must not change the verdict of a latency gate."""

from __future__ import annotations

import itertools
from typing import Any

import pandas as pd
import pytest

from airgate.model import predictors


class _Fixed:
    kind = "fixed"
    size_kb = 0.0

    def predict(self, history: pd.DataFrame, rows: pd.DataFrame) -> Any:
        return [0.5] * len(rows)


def _clocks(monkeypatch: pytest.MonkeyPatch, wall_ms: float, cpu_ms: float) -> None:
    """Each predict call takes ``wall_ms`` on the wall clock and ``cpu_ms`` of this process's CPU time."""
    wall = itertools.count(step=wall_ms / 1000)
    cpu = itertools.count(step=cpu_ms / 1000)
    monkeypatch.setattr(predictors.time, "perf_counter", lambda: float(next(wall)))
    monkeypatch.setattr(predictors.time, "process_time", lambda: float(next(cpu)))


ROWS = pd.DataFrame({"student_id": [1] * 10, "x": range(10)})


def test_time_spent_waiting_for_a_core_is_not_the_models_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    _clocks(monkeypatch, wall_ms=140.0, cpu_ms=60.0)  # a loaded machine: the process waited 80 ms for a core
    assert predictors.latency_ms_per_1k(_Fixed(), ROWS, ROWS) == pytest.approx(60.0)


def test_a_multi_threaded_predict_counts_its_wall_time(monkeypatch: pytest.MonkeyPatch) -> None:
    _clocks(monkeypatch, wall_ms=50.0, cpu_ms=100.0)  # two threads busy for 50 ms each
    assert predictors.latency_ms_per_1k(_Fixed(), ROWS, ROWS) == pytest.approx(50.0)
