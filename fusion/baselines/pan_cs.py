"""Component-substitution pansharpening as in Vivone's Pansharpening Toolbox (TGRS 2015):
Brovey transform (Gillespie, Kahle, Walker 1987; toolbox ``BT.m`` with PAN histogram matching) and
Gram-Schmidt (Laben & Brower, US patent 6,011,875, 2000; toolbox ``GS.m``, mode 1: the synthetic
intensity is the band mean of the upsampled MS)."""
from __future__ import annotations

import numpy as np

from fusion.baselines._checks import pan_pair
from fusion.baselines.pan_interp import upsample_ms


def _match(pan: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Histogram-match PAN to ``target``: (P - mean P) * std(T) / std(P) + mean T (MATLAB std2, N-1).

    A constant PAN has no spread to match and becomes the constant mean(T).
    """
    sp = pan.std(ddof=1) if pan.size > 1 else 0.0
    if sp == 0.0:
        return np.full_like(pan, target.mean())
    return (pan - pan.mean()) * (target.std(ddof=1) / sp) + target.mean()


def brovey(ms: np.ndarray, pan: np.ndarray, ratio: int) -> np.ndarray:
    """Brovey: F_k = MS~_k * P_eq / I, I = band mean of MS~ (upsampled), P_eq = PAN matched to I.

    ms [h, w, C], pan [h*ratio, w*ratio] -> [H, W, C] in the input units.
    """
    ms64, pan64, ratio = pan_pair(ms, pan, ratio)
    lms = upsample_ms(ms64, ratio)
    intensity = lms.mean(axis=2)
    p_eq = _match(pan64, intensity)
    return lms * (p_eq / (intensity + np.finfo(np.float64).eps))[:, :, None]


def gram_schmidt(ms: np.ndarray, pan: np.ndarray, ratio: int) -> np.ndarray:
    """Gram-Schmidt mode 1: F_k = MS~_k + g_k (P_eq - I0), g_k = cov(I0, MS~_k) / var(I0).

    I0 = mean-removed band mean of MS~, P_eq = PAN matched to I0; the final mean equalisation of the
    toolbox is implied (the detail has zero mean).  ms [h, w, C], pan [H, W] -> [H, W, C].
    """
    ms64, pan64, ratio = pan_pair(ms, pan, ratio)
    lms = upsample_ms(ms64, ratio)
    intensity = lms.mean(axis=2)
    i0 = intensity - intensity.mean()
    p_eq = _match(pan64, i0)
    var_i0 = i0.var(ddof=1)
    flat = lms.reshape(-1, lms.shape[2])
    cov = ((flat - flat.mean(axis=0)) * i0.reshape(-1, 1)).sum(axis=0) / (i0.size - 1)
    gains = cov / var_i0 if var_i0 > 0 else np.ones(lms.shape[2])
    delta = p_eq - i0
    out = lms + gains[None, None, :] * delta[:, :, None]
    # toolbox: final mean equalisation of each band to the upsampled MS
    return out - out.mean(axis=(0, 1)) + lms.mean(axis=(0, 1))
