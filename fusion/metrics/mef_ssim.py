"""MEF-SSIM: Ma, Zeng & Wang's multi-exposure fusion quality model (MEFB ``metricsMEF_SSIM``)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ._common import gauss_filter2

MEF_SSIM_K = 0.03
MEF_SSIM_WEIGHTS = np.array([0.0448, 0.2856, 0.3001]) / (0.0448 + 0.2856 + 0.3001)
_W = 11  # window size (11 x 11 box for the patch statistics, 11 x 11 Gaussian sigma 1.5 for the SSIM part)
_EPS = np.finfo(np.float64).eps


def _box_valid(x: np.ndarray) -> np.ndarray:
    k = np.full(_W, 1.0 / _W)
    y = ndimage.correlate1d(ndimage.correlate1d(x, k, axis=0, mode="constant"), k, axis=1, mode="constant")
    h = _W // 2
    return y[h : y.shape[0] - h, h : y.shape[1] - h]


def _gauss_valid(x: np.ndarray) -> np.ndarray:
    return gauss_filter2(x, _W, 1.5, "valid")


def _flat_valid(x: np.ndarray) -> np.ndarray:
    """True where the 11 x 11 window is constant (its variance is exactly 0; moments leave rounding noise)."""
    h = _W // 2
    mx = ndimage.maximum_filter(x, size=_W)[h:-h, h:-h]
    mn = ndimage.minimum_filter(x, size=_W)[h:-h, h:-h]
    return mx == mn


def mef_ssim_single_scale(seq: Sequence[np.ndarray], f: np.ndarray, k: float = MEF_SSIM_K) -> float:
    """One scale of Ma et al.'s ``mef_ssim``: mean of the quality map over all 11 x 11 windows ('valid').

    Per window and source k: mean mu_k and contrast e_k = ||x_k - mu_k|| + 0.001 (box window); structure
    consistency R = ||sum_k x_k - mean|| / sum_k ||x_k - mu_k|| ((n + eps)/(d + eps), clipped to (0, 1));
    weights w_k = (e_k / 11)^p + eps normalised over k with p = min(tan(pi/2 R), 10); the desired patch
    r = sum_k w_k (x_k - mu_k) / e_k rescaled to norm max_k e_k (if non-zero); q = (2 s_rf + C) /
    (s_r^2 + s_f^2 + C), C = (K 255)^2, with Gaussian-weighted (11 x 11, sigma 1.5) statistics of (r, F).
    The per-window loops of the MATLAB code are evaluated in closed form from local (cross-)moments; windows
    where a source is constant get exactly zero variance (the MATLAB code has rounding noise there).
    """
    xs = [np.asarray(x, dtype=np.float64) for x in seq]
    f = np.asarray(f, dtype=np.float64)
    n = len(xs)
    nw = float(_W * _W)
    flat = [_flat_valid(x) for x in xs]
    mu = [_box_valid(x) for x in xs]
    var = [np.where(fl, 0.0, np.maximum(_box_valid(x * x) - m * m, 0.0)) for x, m, fl in zip(xs, mu, flat)]
    ed = [np.sqrt(nw * v) + 0.001 for v in var]
    total = np.sum(xs, axis=0)
    flat_all = np.logical_and.reduce(flat)
    mt = _box_valid(total)
    var_t = np.where(flat_all, 0.0, np.maximum(_box_valid(total * total) - mt * mt, 0.0))
    num = np.sqrt(nw * var_t)
    den = np.sum([np.sqrt(nw * v) for v in var], axis=0)
    r = (num + _EPS) / (den + _EPS)
    r = np.where(r > 1, 1 - _EPS, np.where(r < 0, _EPS, r))
    p = np.minimum(np.tan(np.pi / 2 * r), 10.0)
    wmap = [(e / _W) ** p + _EPS for e in ed]
    norm = np.sum(wmap, axis=0)
    a = [w / norm / e for w, e in zip(wmap, ed)]  # coefficient of (x_k - mu_k) in the desired patch
    max_ed = np.max(ed, axis=0)
    gx = [_gauss_valid(x) for x in xs]
    gf = _gauss_valid(f)
    norm2 = np.zeros_like(max_ed)  # ||r||^2 before rescaling
    g_var = np.zeros_like(max_ed)  # Gaussian-weighted variance before rescaling
    for i in range(n):
        for j in range(i, n):
            mult = 1.0 if i == j else 2.0
            both_flat = flat[i] | flat[j]
            cb = np.where(both_flat, 0.0, _box_valid(xs[i] * xs[j]) - mu[i] * mu[j])
            cg = np.where(both_flat, 0.0, _gauss_valid(xs[i] * xs[j]) - gx[i] * gx[j])
            norm2 += mult * a[i] * a[j] * nw * cb
            g_var += mult * a[i] * a[j] * cg
    norm_r = np.sqrt(np.maximum(norm2, 0.0))
    scale = np.where(flat_all | (norm_r <= 0), 0.0, max_ed / np.where(norm_r > 0, norm_r, 1.0))
    cov = np.zeros_like(max_ed)
    for i in range(n):
        cov += a[i] * np.where(flat[i], 0.0, _gauss_valid(xs[i] * f) - gx[i] * gf)
    s1 = scale * scale * g_var
    s12 = scale * cov
    s2 = _gauss_valid(f * f) - gf * gf
    c = (k * 255.0) ** 2
    q = (2 * s12 + c) / (s1 + s2 + c)
    return float(q.mean())


def _downsample(x: np.ndarray) -> np.ndarray:
    """``imfilter(x, ones(2)/4, 'symmetric', 'same')`` then ``(1:2:end, 1:2:end)``."""
    xp = np.pad(x, ((0, 1), (0, 1)), mode="symmetric")
    y = 0.25 * (xp[:-1, :-1] + xp[1:, :-1] + xp[:-1, 1:] + xp[1:, 1:])
    return y[::2, ::2]


def mef_ssim(f: np.ndarray, *sources: np.ndarray, k: float = MEF_SSIM_K, levels: int = 3) -> float:
    """MEF-SSIM (Ma, Zeng & Wang 2015), ``mef_ms_ssim`` as MEFB ``metricsMEF_SSIM`` calls it.

    ``sources``: the exposure sequence (grey, 0..255; MEFB converts colour with ``rgb2gray`` first, see
    :func:`fusion.metrics.rgb2gray`). Q = prod_l Q_l^w_l over ``levels`` = 3 scales with weights
    (0.0448, 0.2856, 0.3001) normalised, Q_l = :func:`mef_ssim_single_scale`; between scales every image is
    averaged over 2 x 2 blocks (``imfilter(ones(2)/4, 'symmetric')``) and decimated by 2. In (0, 1] for
    non-negative Q_l; F equal to every source gives 1.
    """
    if len(sources) < 2:
        raise ValueError("mef_ssim needs at least two source images")
    if min(np.shape(f)[:2]) / 2 ** (levels - 1) < _W:
        raise ValueError(f"image {np.shape(f)} too small for {levels} MEF-SSIM scales (11 x 11 window)")
    seq = [np.asarray(s, dtype=np.float64) for s in sources]
    fi = np.asarray(f, dtype=np.float64)
    qs = []
    for level in range(levels):
        qs.append(mef_ssim_single_scale(seq, fi, k))
        if level < levels - 1:
            seq = [_downsample(s) for s in seq]
            fi = _downsample(fi)
    weights = MEF_SSIM_WEIGHTS if levels == 3 else np.full(levels, 1.0 / levels)
    return float(np.prod(np.asarray(qs) ** weights))
