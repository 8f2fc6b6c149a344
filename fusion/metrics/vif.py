"""VIF: Sheikh & Bovik's pixel-domain multi-scale visual information fidelity (``vifp_mscale``), and VIFF,
Han et al.'s fusion metric built on it (what MEFB reports as "VIF")."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ._common import gauss_filter2

SIGMA_NSQ = 2.0


def _vif_scale_maps(ref: np.ndarray, dist: np.ndarray, sigma_nsq: float, scales: int = 4
                    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per scale of ``vifp_mscale``: (g, log10(1 + g^2 s1^2 / (sv^2 + sigma_nsq)), log10(1 + s1^2 / sigma_nsq)).

    4 scales, N = 2^(5-s) + 1, Gaussian N x N with sigma N/5, 'valid'; for s > 1 both images are first
    low-passed with that window ('valid') and decimated by 2. Local statistics follow the MATLAB code exactly
    (negative variances clamped, the 1e-10 guards, g < 0 handling). Stops where the image gets smaller than
    the window (MATLAB's empty 'valid' maps contribute nothing).
    """
    ref = np.asarray(ref, dtype=np.float64)
    dist = np.asarray(dist, dtype=np.float64)
    for scale in range(1, scales + 1):
        n = 2 ** (4 - scale + 1) + 1
        sd = n / 5.0
        if scale > 1:
            if min(ref.shape) < n:
                return
            ref = gauss_filter2(ref, n, sd, "valid")[::2, ::2]
            dist = gauss_filter2(dist, n, sd, "valid")[::2, ::2]
        if min(ref.shape) < n:
            return
        mu1, mu2 = gauss_filter2(ref, n, sd, "valid"), gauss_filter2(dist, n, sd, "valid")
        s1 = gauss_filter2(ref * ref, n, sd, "valid") - mu1 * mu1
        s2 = gauss_filter2(dist * dist, n, sd, "valid") - mu2 * mu2
        s12 = gauss_filter2(ref * dist, n, sd, "valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        low1 = s1 < 1e-10
        g[low1] = 0
        sv[low1] = s2[low1]
        s1[low1] = 0
        low2 = s2 < 1e-10
        g[low2] = 0
        sv[low2] = 0
        neg = g < 0
        sv[neg] = s2[neg]
        g[neg] = 0
        sv[sv <= 1e-10] = 1e-10
        yield g, np.log10(1 + g * g * s1 / (sv + sigma_nsq)), np.log10(1 + s1 / sigma_nsq)


def vifp(ref: np.ndarray, dist: np.ndarray, sigma_nsq: float = SIGMA_NSQ, scales: int = 4) -> float:
    """vifp_mscale(ref, dist) = sum over scales of sum log10(1 + g^2 s1^2 / (sv^2 + sigma_nsq)) / sum
    log10(1 + s1^2 / sigma_nsq), the statistics of :func:`_vif_scale_maps`; ``scales`` < 4 keeps only the
    finest scales (for checks)."""
    num = den = 0.0
    for _, vid, vind in _vif_scale_maps(ref, dist, sigma_nsq, scales):
        num += float(vid.sum())
        den += float(vind.sum())
    return num / den if den > 0 else float("nan")


def vif(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIF = vifp(A, F) + vifp(B, F), reference = source, distorted = fused, sigma_nsq = 2.

    The multi-scale pixel-domain VIF summed over both sources is what most fusion papers report
    (Tang's and VIFB's evaluation scripts).
    """
    return vifp(a, f) + vifp(b, f)


VIFF_SIGMA_NSQ = 0.005 * 255 * 255  # visual noise of Han et al.
VIFF_C = 1e-7
VIFF_WEIGHTS = np.array([1.0, 0.0, 0.15, 1.0]) / 2.15


def viff(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIFF (Han, Cai, Cao & Xu 2013), MEFB ``metricsVIF`` (the code its authors provide).

    Per source X in {A, B}, the ``vifp_mscale`` statistics of (X, F) with visual noise sigma_nsq = 0.005 *
    255^2 (:func:`_vif_scale_maps`). At each scale k and pixel the source with the smaller gain g is chosen
    (B where g_A >= g_B); F_k = sum(VID_sel + C) / sum(VIND_sel + C), C = 1e-7; VIFF = sum_k p_k F_k with
    p = (1, 0, 0.15, 1) / 2.15. Grey inputs (MEFB's colour path applies it per RGB channel). F = A = B gives 1.
    """
    maps_a = list(_vif_scale_maps(a, f, VIFF_SIGMA_NSQ))
    maps_b = list(_vif_scale_maps(b, f, VIFF_SIGMA_NSQ))
    if len(maps_a) < 4:
        raise ValueError(f"VIFF needs 4 scales; image {np.shape(f)} is too small")
    out = 0.0
    for p, (g1, z1, m1), (g2, z2, m2) in zip(VIFF_WEIGHTS, maps_a, maps_b):
        pick1 = g1 < g2
        z = np.where(pick1, z1, z2)
        m = np.where(pick1, m1, m2)
        out += p * float((z + VIFF_C).sum()) / float((m + VIFF_C).sum())
    return out
