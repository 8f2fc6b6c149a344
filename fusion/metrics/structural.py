"""Structural-similarity fusion metrics: SSIM (VIFB), Qy (Yang et al.), Qc (Cvejic et al.), Qw (Piella &
Heijmans), all in the toolboxes' MATLAB conventions (MEFB ``metricsQy``, ``metricsQc``, ``metricsQw``)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import filter2, gauss_filter2, memo_by_content


def _moments(x: np.ndarray, y: np.ndarray, size: int, sigma: float):
    f = lambda z: gauss_filter2(z, size, sigma, "valid")  # noqa: E731
    mx, my = f(x), f(y)
    sxx = f(x * x) - mx * mx
    syy = f(y * y) - my * my
    sxy = f(x * y) - mx * my
    return mx, my, sxx, syy, sxy


@memo_by_content()
def _ssim_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, E[x^2]) with the 11 x 11, sigma 1.5 Gaussian, 'valid' (reused across colour channels)."""
    mu, m2 = gauss_filter2(x, 11, 1.5, "valid"), gauss_filter2(x * x, 11, 1.5, "valid")
    mu.setflags(write=False)
    m2.setflags(write=False)
    return mu, m2


def ssim_map(x: np.ndarray, y: np.ndarray, data_range: float = 255.0, *, size: int = 11, sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Wang et al. ``ssim_index`` map: normalised Gaussian window, 'valid' filtering, C = (K L)^2."""
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    if size == 11 and sigma == 1.5:
        (mx, exx), (my, eyy) = _ssim_stats(x), _ssim_stats(y)
        sxx, syy = exx - mx * mx, eyy - my * my
        sxy = gauss_filter2(x * y, 11, 1.5, "valid") - mx * my
    else:
        mx, my, sxx, syy, sxy = _moments(x, y, size, sigma)
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def ssim_pair(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM(X, Y): mean of the 11 x 11 Gaussian (sigma 1.5) 'valid' SSIM map, K = (0.01, 0.03)."""
    return float(ssim_map(x, y, data_range).mean())


def ssim(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SSIM = SSIM(A, F) + SSIM(B, F): a SUM over the two sources (VIFB ``metricsSsim``; DTPF reports it this way).

    Window: normalised 11 x 11 Gaussian, sigma 1.5, 'valid'; K = (0.01, 0.03), L = 255; mean of the map.
    Identical images give 2. Divide by 2 for the averaged convention.
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

    DELIBERATE DEVIATION from the MATLAB code: with C = 2e-16 the MATLAB formula divides floating-point
    cancellation noise by cancellation noise in flat regions (saturated exposures), giving maps far outside
    [-1, 1] (per-image values of 4 to 272, or -Inf) that depend on the order of MATLAB's summations and cannot
    be reproduced. Here local variances below 1e-9 (mu^2 + 1) are exactly 0 and covariances are clipped to
    Cauchy-Schwarz (|s_xy| <= s_x s_y), so every map is in [-1, 1] and flat windows reduce to the luminance
    term. On images without flat 7 x 7 windows the value equals the MATLAB code's.
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


def _flat_valid(x: np.ndarray, size: int) -> np.ndarray:
    """True where the size x size window ('valid' positions) is constant."""
    h = size // 2
    flat = ndimage.maximum_filter(x, size=size) == ndimage.minimum_filter(x, size=size)
    return flat[h : x.shape[0] - h, h : x.shape[1] - h]


def _ssim_yang(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Liu's ``ssim_yang``: SSIM map and covariance, 7 x 7 Gaussian (sigma 1.5), C1 = C2 = 2e-16, 'valid'.

    Where a window of x or y is constant its variance and the covariance are set to exactly 0 (the value
    in exact arithmetic; the E[x^2] - E[x]^2 formula leaves rounding noise there)."""
    c = 2e-16
    mx, my, sxx, syy, sxy = _moments(x, y, 7, 1.5)
    fx, fy = _flat_valid(x, 7), _flat_valid(y, 7)
    sxx, syy, sxy = np.where(fx, 0.0, sxx), np.where(fy, 0.0, syy), np.where(fx | fy, 0.0, sxy)
    with np.errstate(invalid="ignore", divide="ignore"):
        smap = ((2 * mx * my + c) * (2 * sxy + c)) / ((mx * mx + my * my + c) * (sxx + syy + c))
    return smap, sxy


def qc(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qc (Cvejic, Loza, Bull & Canagarajah 2005), MEFB ``metricsQc`` (Liu's ``metricCvejic``).

    S_XF = SSIM map of (X, F) with a 7 x 7 Gaussian (sigma 1.5), C1 = C2 = 2e-16, 'valid'; sigma_XF the local
    covariance; mu = sigma_AF / (sigma_AF + sigma_BF); Q = mu S_AF + (1 - mu) S_BF, set to 0 where mu < 0 and
    to 1 where mu > 1; Qc = mean of Q over its non-NaN pixels (NaN where sigma_AF + sigma_BF = 0).

    One deviation, in windows where a source is constant: there sigma_XF is 0 in exact arithmetic, but the
    MATLAB code's E[xy] - E[x]E[y] leaves rounding noise whose SIGN decides whether mu is just above 1
    (Q = 1) or at 1 (Q = S_AF), so MATLAB's value depends on its summation order (GNU Octave running the same
    code differs from it by ~3e-3 on a TNO image with a saturated source). Here the covariance is exactly 0
    there (mu = 1 or 0 exactly). On images without constant 7 x 7 windows the value equals the MATLAB code's.
    F = A = B gives 1 on textured images.
    """
    s_af, sig_af = _ssim_yang(a, f)
    s_bf, sig_bf = _ssim_yang(b, f)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = sig_af / (sig_af + sig_bf)
        sim = mu * s_af + (1 - mu) * s_bf
    sim = np.where(mu < 0, 0.0, np.where(mu > 1, 1.0, sim))
    return float(np.mean(sim[~np.isnan(sim)]))


_PIELLA_KX = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float64)
_PIELLA_KY = np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], dtype=np.float64)


def _prewitt_magnitude(x: np.ndarray) -> np.ndarray:
    gx, gy = filter2(_PIELLA_KX, x, "same"), filter2(_PIELLA_KY, x, "same")
    return np.sqrt(gx * gx + gy * gy)


def qw(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qw (Piella & Heijmans 2003), MEFB ``metricsQw`` (Liu's ``metricPeilla``, option 3: edge-dependent).

    On the Prewitt edge magnitudes E_X = sqrt(filter2(kx, X)^2 + filter2(ky, X)^2) ('same', zero padding,
    kx = [1 0 -1] x 3 rows, ky its transpose): Wang's ``ssim_index`` (11 x 11 Gaussian sigma 1.5, K = (0.01,
    0.03), L = 255, 'valid') gives local variances s_A, s_B of (E_A, E_B) (0.5 added to both where both are 0)
    and maps S(E_F, E_A), S(E_F, E_B); lambda = s_A / (s_A + s_B), c = max(s_A, s_B) / sum(max(s_A, s_B));
    Qw = sum c (lambda S(E_F, E_A) + (1 - lambda) S(E_F, E_B)) (alpha = 1). F = A = B gives 1.
    """
    ea, eb, ef = _prewitt_magnitude(a), _prewitt_magnitude(b), _prewitt_magnitude(f)
    _, _, saa, sbb, _ = _moments(ea, eb, 11, 1.5)
    both_zero = (saa + sbb) == 0
    saa, sbb = saa + 0.5 * both_zero, sbb + 0.5 * both_zero
    lam = saa / (saa + sbb)
    s1, s2 = ssim_map(ef, ea), ssim_map(ef, eb)
    cw = np.maximum(saa, sbb)
    cw = cw / cw.sum()
    return float((cw * (lam * s1 + (1 - lam) * s2)).sum())
