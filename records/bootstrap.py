"""The percentile bootstrap over documents that every CI of the ROUGE figures uses (the suite's ROUGE and
NLL intervals, the report's paired margins over Lead-k): one home, so that both layers resample alike."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) document indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_ci(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean of ``values`` and the percentile bootstrap interval of the mean (documents resampled
    with replacement). Raises ValueError for no values."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("bootstrap of no values")
    means = values[resample_indices(values.size, resamples, seed)].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(values.mean()), float(lo), float(hi)
