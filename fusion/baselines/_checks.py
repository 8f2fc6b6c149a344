"""Input validation shared by the classical baselines (clear errors naming the argument)."""
from __future__ import annotations

import numpy as np


def as_image(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` as float64 HxW or HxWxC, raising ValueError naming ``name`` otherwise."""
    arr = np.asarray(x)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ValueError(f"{name}: expected an HxW or HxWxC image, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def fusion_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate the two sources of a fusion method: same shape, HxW or HxWx3, float."""
    a64, b64 = as_image(a, "a"), as_image(b, "b")
    if a64.shape != b64.shape:
        raise ValueError(f"sources a {a64.shape} and b {b64.shape} must have the same shape (register/resize first)")
    if a64.ndim == 3 and a64.shape[2] not in (1, 3):
        raise ValueError(f"a: expected 1 or 3 channels, got {a64.shape[2]}")
    return a64, b64


def pan_pair(ms: np.ndarray, pan: np.ndarray, ratio: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate a pansharpening input: ms [h, w, C] low-res, pan [h*ratio, w*ratio]."""
    ms64, pan64 = as_image(ms, "ms"), as_image(pan, "pan")
    if ms64.ndim == 2:
        ms64 = ms64[:, :, None]
    if pan64.ndim == 3:
        if pan64.shape[2] != 1:
            raise ValueError(f"pan: expected a single band, got shape {pan64.shape}")
        pan64 = pan64[:, :, 0]
    if int(ratio) != ratio or ratio < 1:
        raise ValueError(f"ratio: expected a positive integer, got {ratio!r}")
    ratio = int(ratio)
    h, w = ms64.shape[:2]
    if pan64.shape != (h * ratio, w * ratio):
        raise ValueError(f"pan {pan64.shape} must be ratio={ratio} times ms {ms64.shape[:2]} on each side")
    return ms64, pan64, ratio
