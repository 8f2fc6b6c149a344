"""Laplacian-pyramid fusion (Burt & Adelson, "The Laplacian pyramid as a compact image code", 1983;
fusion rule as in Burt & Kolczynski 1993): choose-max (by magnitude) of the detail coefficients,
average of the coarsest Gaussian (base) level."""
from __future__ import annotations

import cv2
import numpy as np

from fusion.baselines._checks import fusion_pair


def _levels(shape: tuple[int, ...], levels: int | None) -> int:
    """Number of pyramid levels: as requested, capped so the coarsest level keeps >= 8 pixels a side."""
    cap = max(0, int(np.floor(np.log2(min(shape[:2]) / 8.0))))
    return cap if levels is None else max(0, min(int(levels), cap))


def laplacian_pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """Burt-Adelson pyramid [L_0, ..., L_{n-1}, G_n] of a float HxW image (cv2 5-tap kernel, reflect-101 border).

    L_i = G_i - expand(G_{i+1}); reconstructing with :func:`reconstruct` is exact up to rounding.
    """
    pyr: list[np.ndarray] = []
    g = img
    for _ in range(levels):
        down = cv2.pyrDown(g)
        up = cv2.pyrUp(down, dstsize=(g.shape[1], g.shape[0]))
        pyr.append(g - up)
        g = down
    pyr.append(g)
    return pyr


def reconstruct(pyr: list[np.ndarray]) -> np.ndarray:
    """Invert :func:`laplacian_pyramid`: G_i = L_i + expand(G_{i+1}), from the top down."""
    g = pyr[-1]
    for lap in reversed(pyr[:-1]):
        g = lap + cv2.pyrUp(g, dstsize=(lap.shape[1], lap.shape[0]))
    return g


def _fuse_channel(a: np.ndarray, b: np.ndarray, levels: int) -> np.ndarray:
    pa, pb = laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)
    fused = [np.where(np.abs(la) >= np.abs(lb), la, lb) for la, lb in zip(pa[:-1], pb[:-1])]
    fused.append(0.5 * (pa[-1] + pb[-1]))
    return reconstruct(fused)


def laplacian_pyramid_fusion(a: np.ndarray, b: np.ndarray, levels: int | None = 4) -> np.ndarray:
    """Fuse two registered images by Laplacian-pyramid choose-max-detail / average-base.

    a, b: HxW or HxWx3 float in [0, 1] (colour: per channel); returns the same shape, float64.
    ``levels`` detail levels (None: as many as fit, coarsest side >= 8 px).
    """
    a64, b64 = fusion_pair(a, b)
    n = _levels(a64.shape, levels)
    if a64.ndim == 2:
        return _fuse_channel(a64, b64, n)
    return np.stack([_fuse_channel(a64[..., c], b64[..., c], n) for c in range(a64.shape[2])], axis=-1)
