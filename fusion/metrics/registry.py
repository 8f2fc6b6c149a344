"""The one table of fusion metrics by name: ``fn(F, A, B)`` on grey float64 0..255 images (the functions of the
family modules); :func:`fusion.metrics.fusion_metrics` and the benchmark suites both select from it."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .fmi import fmi
from .hvs import qcb, qcv
from .information import (
    cross_entropy,
    entropy,
    mutual_information,
    mutual_information_vifb,
    nmi,
    qncie,
    tsallis_entropy,
)
from .mef_ssim import mef_ssim
from .phase_congruency import qp
from .qabf import qabf
from .statistics import (
    average_gradient,
    correlation_coefficient,
    edge_intensity,
    psnr,
    psnr_vifb,
    rmse_vifb,
    scd,
    spatial_frequency,
    standard_deviation,
)
from .structural import qc, qw, qy, ssim
from .vif import vif, viff

Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], float]

#: fusion metric name -> fn(F, A, B) on grey float64 0..255 images. Higher is better except Qcv.
FUSION_METRICS: dict[str, Metric] = {
    "EN": lambda f, a, b: entropy(f),
    "SD": lambda f, a, b: standard_deviation(f),
    "SF": lambda f, a, b: spatial_frequency(f),
    "AG": lambda f, a, b: average_gradient(f),
    "MI": mutual_information,
    "MI_vifb": mutual_information_vifb,
    "SCD": scd,
    "VIF": vif,
    "Qabf": qabf,
    "Qcb": qcb,
    "Qcv": qcv,
    "Qy": qy,
    "SSIM": ssim,
    "PSNR": psnr,
    "CC": correlation_coefficient,
}
#: what :func:`fusion_metrics` computes when no ``metrics`` are named (the fast, long-standing set)
DEFAULT_FUSION_METRICS: tuple[str, ...] = tuple(FUSION_METRICS)
FUSION_METRICS.update({
    "PSNR_vifb": psnr_vifb,
    "RMSE_vifb": rmse_vifb,
    "EI": lambda f, a, b: edge_intensity(f),
    "CE": cross_entropy,
    "NMI": nmi,
    "Qncie": qncie,
    "TE": tsallis_entropy,
    "Qc": qc,
    "Qw": qw,
    "Qp": qp,
    "FMI": fmi,
    "MEF_SSIM": lambda f, a, b: mef_ssim(f, a, b),
    "VIFF": viff,
})
