"""Guided-filtering fusion (GFF): S. Li, X. Kang, J. Hu, "Image Fusion With Guided Filtering",
IEEE TIP 22(7), 2013.  Two-scale decomposition (31x31 mean filter), saliency |Laplacian| smoothed by a
Gaussian (11x11, sigma 5), winner-take-all weight maps refined by the guided filter (He et al. 2013)
with the paper's r1=45, eps1=0.3 (base) and r2=7, eps2=1e-6 (detail), images in [0, 1]."""
from __future__ import annotations

import cv2
import numpy as np

from fusion.baselines._checks import fusion_pair

_LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def _box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)^2 window clipped to the image (He et al.'s boxfilter(.)/N convention)."""
    k = (2 * r + 1, 2 * r + 1)
    s = cv2.boxFilter(x, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    n = cv2.boxFilter(np.ones_like(x), -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    return s / n


def guided_filter(guide: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Grey-guided filter q = mean(a) * I + mean(b) (He, Sun, Tang, TPAMI 2013, Eqs. 7-8). HxW -> HxW."""
    mean_i, mean_p = _box_mean(guide, r), _box_mean(p, r)
    cov_ip = _box_mean(guide * p, r) - mean_i * mean_p
    var_i = _box_mean(guide * guide, r) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box_mean(a, r) * guide + _box_mean(b, r)


def gff(a: np.ndarray, b: np.ndarray, r1: int = 45, eps1: float = 0.3, r2: int = 7,
        eps2: float = 1e-6) -> np.ndarray:
    """GFF of two registered sources. a, b: HxW or HxWx3 float in [0, 1] -> same shape, float64.

    Colour inputs: saliency and guided filtering use each source's grey (channel mean) as the guide, and
    the weights are applied to every channel (the paper filters with the colour image as the guide).
    """
    a64, b64 = fusion_pair(a, b)
    srcs = [a64, b64]
    greys = [s.mean(axis=2) if s.ndim == 3 else s for s in srcs]
    # Eq. (1)-(2): base = 31x31 average, detail = image - base (replicate border like imfilter)
    bases = [cv2.blur(s, (31, 31), borderType=cv2.BORDER_REPLICATE) for s in srcs]
    details = [s - bs for s, bs in zip(srcs, bases)]
    # Eq. (3): saliency S = |I * L| * g_{5,5}
    sal = [cv2.GaussianBlur(np.abs(cv2.filter2D(g, -1, _LAPLACIAN, borderType=cv2.BORDER_REPLICATE)),
                            (11, 11), 5.0, borderType=cv2.BORDER_REPLICATE) for g in greys]
    # Eq. (4): winner-take-all maps (ties go to the first source)
    win_a = (sal[0] >= sal[1]).astype(np.float64)
    maps = [win_a, 1.0 - win_a]
    # Eq. (5): guided-filter refinement, then per-pixel normalisation
    wb = [guided_filter(g, p, r1, eps1) for g, p in zip(greys, maps)]
    wd = [guided_filter(g, p, r2, eps2) for g, p in zip(greys, maps)]
    wb_sum, wd_sum = wb[0] + wb[1], wd[0] + wd[1]
    wb = [w / np.where(np.abs(wb_sum) < 1e-12, 1.0, wb_sum) for w in wb]
    wd = [w / np.where(np.abs(wd_sum) < 1e-12, 1.0, wd_sum) for w in wd]
    if a64.ndim == 3:
        wb = [w[..., None] for w in wb]
        wd = [w[..., None] for w in wd]
    # Eq. (6)-(7): fused base + fused detail
    return wb[0] * bases[0] + wb[1] * bases[1] + wd[0] * details[0] + wd[1] * details[1]
