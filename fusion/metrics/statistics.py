"""Simple statistical fusion metrics: SD, SF, AG, CC, SCD, PSNR (VIFB / Tang evaluation conventions)."""
from __future__ import annotations

import numpy as np

from ._common import corr2


def standard_deviation(f: np.ndarray) -> float:
    """SD: population standard deviation sqrt(sum((F - mean F)^2) / (H W)) (VIFB ``metricsSD``)."""
    return float(np.sqrt(np.mean((f - f.mean()) ** 2)))


def spatial_frequency(f: np.ndarray) -> float:
    """SF = sqrt(RF^2 + CF^2), RF^2 = mean of squared row differences, CF^2 of column differences.

    VIFB ``metricsSpatial_frequency``: RF = diff(F, 1, 1), CF = diff(F, 1, 2), each averaged over its own
    (H-1) x W or H x (W-1) differences. Constant image -> 0.
    """
    rf = np.diff(f, axis=0)
    cf = np.diff(f, axis=1)
    return float(np.sqrt(np.mean(rf**2) + np.mean(cf**2)))


def average_gradient(f: np.ndarray) -> float:
    """AG = sum(sqrt((gx^2 + gy^2) / 2)) / ((H - 1)(W - 1)), gx, gy from MATLAB ``gradient``.

    ``gradient`` uses central differences inside and one-sided differences at the borders, exactly what
    ``numpy.gradient`` (edge_order=1) does (VIFB ``metricsAvg_gradient``; SPEC Appendix A).
    """
    h, w = f.shape
    gy, gx = np.gradient(f)
    return float(np.sqrt((gx**2 + gy**2) / 2.0).sum() / ((h - 1) * (w - 1)))


def correlation_coefficient(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """CC = (corr2(A, F) + corr2(B, F)) / 2, Pearson correlation (Tang / CDDFuse evaluator convention)."""
    return 0.5 * (corr2(a, f) + corr2(b, f))


def scd(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SCD (sum of the correlations of differences, Aslantas & Bendes): corr2(F - B, A) + corr2(F - A, B)."""
    return corr2(f - b, a) + corr2(f - a, b)


def psnr_pair(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR between two images: 10 log10(data_range^2 / MSE) (inf when identical)."""
    mse = float(np.mean((x - y) ** 2))
    with np.errstate(divide="ignore"):
        return float(10.0 * np.log10(data_range**2 / mse)) if mse > 0 else float("inf")


def psnr(f: np.ndarray, a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR = 10 log10(255^2 / MSE), MSE = (MSE(A, F) + MSE(B, F)) / 2 (VIFB ``metricsPsnr``, peak 255)."""
    mse = 0.5 * (float(np.mean((a - f) ** 2)) + float(np.mean((b - f) ** 2)))
    return float(10.0 * np.log10(data_range**2 / mse)) if mse > 0 else float("inf")
