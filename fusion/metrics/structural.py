"""Structural-similarity fusion metrics: SSIM (VIFB convention) and Qy (Yang et al., MEFB)."""
from __future__ import annotations

import numpy as np

from ._common import gauss_filter2


def _moments(x: np.ndarray, y: np.ndarray, size: int, sigma: float):
    f = lambda z: gauss_filter2(z, size, sigma, "valid")  # noqa: E731
    mx, my = f(x), f(y)
    sxx = f(x * x) - mx * mx
    syy = f(y * y) - my * my
    sxy = f(x * y) - mx * my
    return mx, my, sxx, syy, sxy


def ssim_map(x: np.ndarray, y: np.ndarray, data_range: float = 255.0, *, size: int = 11, sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Wang et al. ``ssim_index`` map: normalised Gaussian window, 'valid' filtering, C = (K L)^2."""
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my, sxx, syy, sxy = _moments(x, y, size, sigma)
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def ssim_pair(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM(X, Y): mean of the 11 x 11 Gaussian (sigma 1.5) 'valid' SSIM map, K = (0.01, 0.03)."""
    return float(ssim_map(x, y, data_range).mean())


def ssim(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SSIM = SSIM(A, F) + SSIM(B, F): a SUM over the two sources (VIFB ``metricsSsim``, seed 004).

    Window: normalised 11 x 11 Gaussian, sigma 1.5, 'valid'; K = (0.01, 0.03), L = 255; mean of the map.
    Identical images give 2. (SPEC Appendix A.) Divide by 2 for the averaged convention.
    """
    return ssim_pair(a, f) + ssim_pair(b, f)


def _clean_var(var: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Local variance E[x^2] - E[x]^2 with its cancellation noise (~1e-11 at 0-255) set to exactly 0."""
    return np.where(var > 1e-9 * (mean * mean + 1.0), var, 0.0)


def qy(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qy (Yang et al. 2008; MEFB ``metricsQy``): SSIM-based fusion quality.

    SSIM maps with a normalised 7 x 7 Gaussian (sigma 1.5), C1 = C2 = 2e-16, 'valid': S_AB (and
    sigma_A^2, sigma_B^2), S_AF, S_BF. Where S_AB >= 0.75: lambda S_AF + (1 - lambda) S_BF with
    lambda = sigma_A^2 / (sigma_A^2 + sigma_B^2); elsewhere max(S_AF, S_BF) (NaN-ignoring, as MATLAB max). Mean over non-NaN pixels
    (NaN arises where both source variances vanish, exactly as in the MATLAB code).

    With C = 2e-16 the MATLAB formula divides cancellation noise by cancellation noise in flat regions
    (saturated exposures), giving maps far outside [-1, 1]. Here local variances below 1e-9 (mu^2 + 1) are
    exactly 0 and covariances are clipped to Cauchy-Schwarz (|s_xy| <= s_x s_y), so every map is in [-1, 1]
    and flat windows reduce to the luminance term.
    """
    c = 2e-16
    g = lambda z: gauss_filter2(z, 7, 1.5, "valid")  # noqa: E731
    ma, mb, mf = g(a), g(b), g(f)
    saa, sbb, sff = (_clean_var(g(x * x) - m * m, m) for x, m in ((a, ma), (b, mb), (f, mf)))
    sab, saf, sbf = (np.clip(g(x * y) - mx * my, -np.sqrt(sx * sy), np.sqrt(sx * sy))
                     for x, y, mx, my, sx, sy in ((a, b, ma, mb, saa, sbb), (a, f, ma, mf, saa, sff),
                                                  (b, f, mb, mf, sbb, sff)))

    def _s(mx, my, sxx, syy, sxy):
        return ((2 * mx * my + c) * (2 * sxy + c)) / ((mx * mx + my * my + c) * (sxx + syy + c))

    with np.errstate(invalid="ignore", divide="ignore"):
        s_ab = _s(ma, mb, saa, sbb, sab)
        s_af = _s(ma, mf, saa, sff, saf)
        s_bf = _s(mb, mf, sbb, sff, sbf)
        binary = (s_ab >= 0.75).astype(np.float64)
        lam = saa / (saa + sbb)
        q = (lam * s_af + (1 - lam) * s_bf) * binary + np.fmax(s_af, s_bf) * (1 - binary)
    return float(np.mean(q[~np.isnan(q)]))
