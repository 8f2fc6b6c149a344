"""MTF-GLP with high-pass modulation (MTF-GLP-HPM): Aiazzi, Alparone, Baronti, Garzelli, Selva,
"MTF-tailored multiscale fusion of high-resolution MS and Pan imagery", PE&RS 72(5), 2006; as in
Vivone's Pansharpening Toolbox ``MTF_GLP_HPM.m`` (TGRS 2015): PAN matched to each band, low-passed by
the sensor-MTF-matched filter, decimated and re-interpolated (GLP), F_k = MS~_k * P_k / P_k^LP.

The MTF filter and its per-sensor Nyquist gains are those of :mod:`rwkvfusion_io.wald` (Vivone's toolbox gains,
e.g. WV3 0.325-0.365, GeoEye-1 0.23, IKONOS 0.26-0.29; a generic 0.29 without a sensor), realised there as
the spatial Gaussian with the same response at the Nyquist frequency (the toolbox windows it with fwind1).
"""
from __future__ import annotations

import numpy as np

from fusion.baselines._checks import pan_pair
from fusion.baselines.pan_cs import _match
from fusion.baselines.pan_interp import upsample_ms


def mtf_glp_hpm(ms: np.ndarray, pan: np.ndarray, ratio: int, sensor: str | None = None) -> np.ndarray:
    """MTF-GLP-HPM.  ms [h, w, C], pan [h*ratio, w*ratio] -> [H, W, C] in the input units.

    Per band k: P_k = PAN matched to MS~_k; P_k^LP = EXP(decimate(MTF_k * P_k)) (nearest decimation at
    ratio//2, toolbox interpolation); F_k = MS~_k * P_k / (P_k^LP + eps).  ``sensor`` picks the MTF gains
    (``rwkvfusion_io.wald.sensor_gains``; None = generic).
    """
    from rwkvfusion_io.wald import decimate, mtf_filter, sensor_gains

    ms64, pan64, ratio = pan_pair(ms, pan, ratio)
    lms = upsample_ms(ms64, ratio)
    gains = sensor_gains(sensor, lms.shape[2])
    out = np.empty_like(lms)
    for k in range(lms.shape[2]):
        p_k = _match(pan64, lms[:, :, k])
        low = mtf_filter(p_k, ratio, gains=[float(gains[k])])
        low = upsample_ms(decimate(low, ratio), ratio)
        out[:, :, k] = lms[:, :, k] * p_k / (low + np.finfo(np.float64).eps)
    return out
