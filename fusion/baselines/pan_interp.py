"""Upsampled multispectral image (EXP): the toolbox interpolator ``interp23tap`` (23-tap polynomial kernel,
Aiazzi et al., "Context-driven fusion of high spatial and spectral resolution images based on
oversampled multiresolution analysis", IEEE TGRS 40(10), 2002), as used by Vivone et al., "A critical
comparison among pansharpening algorithms", IEEE TGRS 53(5), 2015.  Implemented in :mod:`rwkvfusion_io.wald`."""
from __future__ import annotations

import numpy as np

from fusion.baselines._checks import as_image, pan_pair


def upsample_ms(ms: np.ndarray, ratio: int) -> np.ndarray:
    """ms [h, w, C] -> [h*ratio, w*ratio, C]: interp23tap for power-of-2 ratios, bicubic otherwise."""
    from rwkvfusion_io.wald import upsample

    x = as_image(ms, "ms")
    return np.asarray(upsample(x, ratio, "auto"), dtype=np.float64).reshape(
        x.shape[0] * ratio, x.shape[1] * ratio, *x.shape[2:])


def exp_method(ms: np.ndarray, pan: np.ndarray, ratio: int) -> np.ndarray:
    """The EXP pansharpening reference: the upsampled MS (PAN unused). ms [h, w, C], pan [H, W] -> [H, W, C]."""
    ms64, _, ratio = pan_pair(ms, pan, ratio)
    return upsample_ms(ms64, ratio)
