"""Unit (layer 1): the one percentile (nearest rank), shared by the emotion features and the benchmarks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attune.core.stats import percentile, quantiles

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


def test_nearest_rank_gives_a_measured_value() -> None:
    values = [40.0, 10.0, 30.0, 20.0]
    assert percentile(values, 0) == 10.0 and percentile(values, 100) == 40.0
    assert percentile(values, 50) in values  # never an interpolated 25.0
    assert percentile(np.arange(101, dtype=np.float32), 95) == 95.0
    assert quantiles(np.array([3.0, 1.0, 2.0]), (0.1, 0.9)) == (1.0, 3.0)


def test_empty_input_gives_the_stated_value() -> None:
    assert math.isnan(percentile([], 50))
    assert percentile([], 95, empty=-120.0) == -120.0
    assert quantiles(np.zeros(0), (0.1, 0.9), empty=0.0) == (0.0, 0.0)


def test_out_of_range_quantiles_are_clamped() -> None:
    assert quantiles([1.0, 2.0], (-0.5, 1.5)) == (1.0, 2.0)
    with pytest.raises(TypeError):
        percentile(None, 50)  # type: ignore[arg-type]
