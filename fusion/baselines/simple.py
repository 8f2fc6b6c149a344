"""Pixel-wise fusion rules: average and choose-max (the textbook baselines, e.g. Piella 2003, Sec. 2)."""
from __future__ import annotations

import numpy as np

from fusion.baselines._checks import fusion_pair


def average(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean of the two sources, F = (A + B) / 2.  a, b: HxW or HxWx3 in [0, 1] -> same shape."""
    a64, b64 = fusion_pair(a, b)
    return 0.5 * (a64 + b64)


def choose_max(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel-wise maximum, F = max(A, B) (per channel for colour).  HxW or HxWx3 -> same shape."""
    a64, b64 = fusion_pair(a, b)
    return np.maximum(a64, b64)
