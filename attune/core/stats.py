"""The one percentile of Attune: nearest rank on one sort, used by the emotion features and every benchmark.

Nearest rank means every figure it gives is a value that was measured (no interpolation between two runs), and
one sort serves several quantiles (``np.percentile`` costs ~10x more on the short arrays of a feature window).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


def quantiles(values: np.ndarray | Iterable[float], qs: Sequence[float], *, empty: float = math.nan
              ) -> tuple[float, ...]:
    """The ``qs`` quantiles (fractions in 0..1) of ``values`` by nearest rank: ``sorted[round(q * (n - 1))]``.

    ``empty`` is returned for every quantile of an empty input."""
    x = np.sort(np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64).ravel())
    if x.size == 0:
        return tuple(empty for _ in qs)
    last = x.size - 1
    return tuple(float(x[int(round(min(max(q, 0.0), 1.0) * last))]) for q in qs)


def percentile(values: np.ndarray | Iterable[float], q: float, *, empty: float = math.nan) -> float:
    """The ``q``-th percentile (0..100) of ``values`` by nearest rank; ``empty`` (NaN) for no values."""
    return quantiles(values, (q / 100.0,), empty=empty)[0]
