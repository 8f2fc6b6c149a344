"""VIF: Sheikh & Bovik's pixel-domain multi-scale visual information fidelity (``vifp_mscale``)."""
from __future__ import annotations

import numpy as np

from ._common import gauss_filter2

SIGMA_NSQ = 2.0


def vifp(ref: np.ndarray, dist: np.ndarray, sigma_nsq: float = SIGMA_NSQ, scales: int = 4) -> float:
    """vifp_mscale(ref, dist): 4 scales, N = 2^(5-s) + 1, Gaussian N x N with sigma N/5, 'valid'.

    For s > 1 both images are first low-passed with that window ('valid') and decimated by 2. Local
    statistics follow the MATLAB code exactly (negative variances clamped, the 1e-10 guards, g < 0 handling);
    Scales where the image is smaller than the window contribute nothing (MATLAB's empty 'valid' maps).
    ``scales`` < 4 keeps only the finest scales (for checks). vifp = sum over scales of sum log10(1 + g^2 s1^2 / (sv^2 + sigma_nsq)) / sum log10(1 + s1^2 / sigma_nsq).
    """
    num = den = 0.0
    ref = np.asarray(ref, dtype=np.float64)
    dist = np.asarray(dist, dtype=np.float64)
    for scale in range(1, scales + 1):
        n = 2 ** (4 - scale + 1) + 1
        sd = n / 5.0
        if scale > 1:
            if min(ref.shape) < n:
                break  # MATLAB's 'valid' filtering gives empty maps: no further contribution
            ref = gauss_filter2(ref, n, sd, "valid")[::2, ::2]
            dist = gauss_filter2(dist, n, sd, "valid")[::2, ::2]
        if min(ref.shape) < n:
            break
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
        num += float(np.log10(1 + g * g * s1 / (sv + sigma_nsq)).sum())
        den += float(np.log10(1 + s1 / sigma_nsq).sum())
    return num / den if den > 0 else float("nan")


def vif(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIF = vifp(A, F) + vifp(B, F), reference = source, distorted = fused, sigma_nsq = 2.

    The multi-scale pixel-domain VIF summed over both sources is what most fusion papers report
    (SPEC section 6 / Appendix A; Tang's and VIFB's evaluation scripts).
    """
    return vifp(a, f) + vifp(b, f)
