"""FMI: Haghighat et al.'s feature mutual information (fast-FMI, edge features), MEFB ``metricsFMI``."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

_SOBEL = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64) / 8.0


def sobel_edges(x: np.ndarray) -> np.ndarray:
    """MATLAB ``edge(x)`` (default 'sobel', automatic threshold, thinning) as a 0/1 float map.

    bx = imfilter(x, S', 'replicate'), by = imfilter(x, S, 'replicate') with S = fspecial('sobel')/8;
    b = bx^2 + by^2; cutoff = 4 mean(b); a pixel is an edge where b > cutoff and either (|bx| >= |by| - 100 eps
    and b(r, c-1) <= b(r, c) > b(r, c+1)) or (|by| >= |bx| - 100 eps and
    b(r-1, c) <= b(r, c) > b(r+1, c)); neighbours outside the image always pass (MATLAB's
    ``computeEdgesWithThinning``). Note GNU Octave's ``edge`` thins differently.
    """
    x = np.asarray(x, dtype=np.float64)
    bx = np.abs(ndimage.correlate(x, _SOBEL.T, mode="nearest"))
    by = np.abs(ndimage.correlate(x, _SOBEL, mode="nearest"))
    b = bx * bx + by * by
    cutoff = 4.0 * b.mean()
    tol = 100 * np.finfo(np.float64).eps
    bp = np.pad(b, 1, mode="constant", constant_values=-np.inf)  # outside neighbours always pass
    left, right, up, down = bp[1:-1, :-2], bp[1:-1, 2:], bp[:-2, 1:-1], bp[2:, 1:-1]
    horiz = (bx >= by - tol) & (left <= b) & (b > right)
    vert = (by >= bx - tol) & (up <= b) & (b > down)
    return ((b > cutoff) & (horiz | vert)).astype(np.float64)


def _xlog2x_real(p: np.ndarray) -> np.ndarray:
    """real(-p log2 p) with 0 for p == 0 (MATLAB takes the real part for tiny negative p)."""
    out = np.zeros_like(p)
    nz = p != 0
    out[nz] = -p[nz] * np.log2(np.abs(p[nz]))
    return out


def _seq_sum(x: np.ndarray) -> np.ndarray:
    """Left-to-right sum over the last axis (MATLAB's order for a short vector). It matters here: for a flat
    window mean(pdf) is 1/9 only up to rounding, and whether sum(a_c f_c) is exactly 0 decides c = 0 or +-1."""
    return np.cumsum(x, axis=-1)[..., -1]


def _normalise_windows(w: np.ndarray) -> np.ndarray:
    mx, mn = w.max(axis=1, keepdims=True), w.min(axis=1, keepdims=True)
    const = mx == mn
    return np.where(const, 1.0, (w - mn) / np.where(const, 1.0, mx - mn))


def _fmi_pairs(xw: np.ndarray, fw: np.ndarray) -> np.ndarray:
    """fmi of each row pair of windows [n, l] (l = w^2 values in MATLAB's column-major order), windows equal
    -> 1 (the caller tests equality on the raw windows)."""
    x, f = _normalise_windows(xw), _normalise_windows(fw)
    xp = x / x.sum(axis=1, keepdims=True)
    fp = f / f.sum(axis=1, keepdims=True)
    xc, fc = np.cumsum(xp, axis=1), np.cumsum(fp, axis=1)
    l = xw.shape[1]
    xt = xp - (_seq_sum(xp) / l)[:, None]
    ft = fp - (_seq_sum(fp) / l)[:, None]
    sxy = _seq_sum(xt * ft)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(sxy == 0, 0.0, sxy / np.sqrt(_seq_sum(xt * xt) * _seq_sum(ft * ft)))
    idx = np.arange(1, xw.shape[1] + 1, dtype=np.float64)
    xsd = np.sqrt((idx**2 * xp).sum(axis=1) - (idx * xp).sum(axis=1) ** 2)
    fsd = np.sqrt((idx**2 * fp).sum(axis=1) - (idx * fp).sum(axis=1) ** 2)
    fi, xj = fc[:, :, None], xc[:, None, :]  # [n, i (F), j (X)]
    upper = 0.5 * (fi + xj - np.abs(fi - xj))  # Frechet bounds of the joint CDF
    lower = 0.5 * (fi + xj - 1 + np.abs(fi + xj - 1))
    prod = fi * xj
    with np.errstate(invalid="ignore", divide="ignore"):
        corr_up = (upper - prod).sum(axis=(1, 2)) / (fsd * xsd)
        corr_lo = (lower - prod).sum(axis=(1, 2)) / (fsd * xsd)
        phi = np.where((c == 0) | (xsd == 0) | (fsd == 0), 0.0, c / corr_up)
        theta = np.where((xsd == 0) | (fsd == 0), 0.0, c / corr_lo)
    pos = c >= 0
    bound = np.where(pos[:, None, None], upper, lower)
    weight = np.where(pos, phi, theta)[:, None, None]
    bp = np.pad(bound, ((0, 0), (1, 0), (1, 0)))  # the bounds' pdf: rectangle differences, zero edges
    jup = bp[:, 1:, 1:] - bp[:, :-1, 1:] - bp[:, 1:, :-1] + bp[:, :-1, :-1]
    jpdf = weight * jup + (1 - weight) * fp[:, :, None] * xp[:, None, :]
    joint = _xlog2x_real(jpdf).sum(axis=(1, 2))
    hx, hf = _xlog2x_real(xp).sum(axis=1), _xlog2x_real(fp).sum(axis=1)
    mi = hx + hf - joint
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mi == 0, 0.0, 2 * mi / (hx + hf))


def _windows(x: np.ndarray, w: int) -> np.ndarray:
    """[n, w*w] sliding windows ('valid', row-major over positions), values in column-major order."""
    v = np.lib.stride_tricks.sliding_window_view(x, (w, w))  # [H-w+1, W-w+1, w(rows), w(cols)]
    return v.swapaxes(-1, -2).reshape(-1, w * w)


def _fmi_unique(xw: np.ndarray, fw: np.ndarray) -> np.ndarray:
    """:func:`_fmi_pairs` evaluated once per distinct (X window, F window) pair (edge windows are binary, so
    only a few thousand distinct pairs occur), equal windows -> 1."""
    l = xw.shape[1]
    if l <= 16 and np.isin(xw, (0.0, 1.0)).all() and np.isin(fw, (0.0, 1.0)).all():
        bits = 1 << np.arange(l, dtype=np.int64)
        codes = ((xw @ bits).astype(np.int64) << l) | (fw @ bits).astype(np.int64)
        uniq_codes, inv = np.unique(codes, return_inverse=True)
        ux = ((uniq_codes[:, None] >> l) & bits > 0).astype(np.float64)
        uf = ((uniq_codes[:, None] & bits) > 0).astype(np.float64)
    else:
        uniq, inv = np.unique(np.concatenate([xw, fw], axis=1), axis=0, return_inverse=True)
        ux, uf = uniq[:, :l], uniq[:, l:]
    vals = np.where(np.all(ux == uf, axis=1), 1.0, _fmi_pairs(ux, uf))
    return vals[inv.ravel()]


def fmi(f: np.ndarray, a: np.ndarray, b: np.ndarray, window: int = 3) -> float:
    """FMI (Haghighat, Aghagolzadeh & Seyedarabi 2011; fast-FMI, Haghighat & Razian 2014), MEFB ``metricsFMI``
    with its defaults: feature 'edge' (:func:`sobel_edges`, MATLAB ``edge``), 3 x 3 sliding windows.

    Per window ('valid') and pair (X, F): raw windows equal -> 1; otherwise both min-max normalised (constant
    -> ones), turned into pdfs over the 9 positions (column-major) and CDFs; the joint pdf is Nelsen's
    mixture phi M + (1 - phi) p_F p_X of the upper Frechet bound M (c >= 0; phi = c / corr(M)) or
    theta W + ... of the lower bound W (c < 0), c the Pearson correlation of the pdfs; fmi_XF =
    2 MI / (H_X + H_F) (0 if MI = 0). FMI = mean of (fmi_AF + fmi_BF) / 2. Toolbox quirk kept: the B pass
    compares B with the F window as the A pass left it (normalised when A != F there). Short sums run left
    to right as MATLAB does: in flat windows the sign of a rounding residue decides c = 0 or 1.
    F = A = B gives 1.
    """
    ea, eb, ef = sobel_edges(a), sobel_edges(b), sobel_edges(f)
    aw, bw, fw = _windows(ea, window), _windows(eb, window), _windows(ef, window)
    fmi_af = _fmi_unique(aw, fw)
    a_eq = np.all(aw == fw, axis=1)
    fw_b = np.where(a_eq[:, None], fw, _normalise_windows(fw))  # the A pass normalises F in place
    fmi_bf = _fmi_unique(bw, fw_b)
    return float(np.mean(0.5 * (fmi_af + fmi_bf)))
