"""Simple statistical fusion metrics: SD, SF, AG, EI, CC, SCD, PSNR, RMSE (VIFB / MEFB / Tang conventions)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import corr2


def standard_deviation(f: np.ndarray) -> float:
    """SD: population standard deviation sqrt(sum((F - mean F)^2) / (H W)) (VIFB ``metricsSD``)."""
    return float(np.sqrt(np.mean((f - f.mean()) ** 2)))


def spatial_frequency(f: np.ndarray) -> float:
    """SF = sqrt(RF^2 + CF^2) (Eskicioglu & Fisher 1995), VIFB / MEFB ``metricsSpatial_frequency``.

    RF^2 = sum of squared differences between horizontally adjacent pixels, CF^2 the same vertically, and
    BOTH are divided by M N (the number of pixels), not by the number of differences, as the toolboxes do.
    Constant image -> 0.
    """
    n = f.size
    rf = float((np.diff(f, axis=1) ** 2).sum()) / n
    cf = float((np.diff(f, axis=0) ** 2).sum()) / n
    return float(np.sqrt(rf + cf))


def spatial_frequency_vifb_color(f: np.ndarray) -> float:
    """VIFB's SF of an H x W x 3 fused image: ``[m, n] = size(F)`` makes MATLAB treat F as the H x 3W matrix
    [R G B] (channels side by side, column-major), so SF is taken over that matrix (differences across the
    channel seams included) rather than averaged over channels. Grey input: :func:`spatial_frequency`."""
    f = np.asarray(f, dtype=np.float64)
    if f.ndim == 2:
        return spatial_frequency(f)
    return spatial_frequency(np.concatenate([f[:, :, c] for c in range(f.shape[2])], axis=1))


_SOBEL = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)  # fspecial('sobel')


def edge_intensity(f: np.ndarray) -> float:
    """EI (Rajalingam & Priya 2018), VIFB / MEFB ``metricsEdge_intensity``: mean of sqrt(gx^2 + gy^2) with
    gx = imfilter(F, fspecial('sobel'), 'replicate') and gy with its transpose (correlation, replicated
    borders). Constant image -> 0; a ramp of slope s along x gives 8 s inside (4 s on the two border columns).
    """
    gx = ndimage.correlate(f, _SOBEL, mode="nearest")
    gy = ndimage.correlate(f, _SOBEL.T, mode="nearest")
    return float(np.sqrt(gx * gx + gy * gy).mean())


def average_gradient(f: np.ndarray) -> float:
    """AG = sum(sqrt((gx^2 + gy^2) / 2)) / ((H - 1)(W - 1)), gx, gy from MATLAB ``gradient``.

    ``gradient`` uses central differences inside and one-sided differences at the borders, exactly what
    ``numpy.gradient`` (edge_order=1) does (VIFB ``metricsAvg_gradient``).
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
    """Textbook PSNR = 10 log10(peak^2 / MSE), MSE = (MSE(A, F) + MSE(B, F)) / 2, MSE the mean squared error.

    This is NOT the number VIFB/MEFB tables report (see :func:`psnr_vifb`); it is the usual definition.
    """
    mse = 0.5 * (float(np.mean((a - f) ** 2)) + float(np.mean((b - f) ** 2)))
    return float(10.0 * np.log10(data_range**2 / mse)) if mse > 0 else float("inf")


def _mse_vifb(x: np.ndarray, f: np.ndarray) -> float:
    # the toolboxes' ``mse`` helper: sqrt(SSE) / (M N), i.e. RMSE / sqrt(M N), not the mean squared error
    return float(np.sqrt(((x - f) ** 2).sum())) / x.size


def rmse_vifb(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """RMSE as VIFB ``metricsRmse`` computes it: (m(A, F) + m(B, F)) / 2 with the toolbox helper
    m(X, F) = sqrt(sum((X - F)^2)) / (M N) (Jagalingam & Hegde 2015 name it RMSE; the helper divides the root
    of the sum by M N, so values are RMSE / sqrt(M N)). Lower is better; identical images give 0."""
    return 0.5 * (_mse_vifb(a, f) + _mse_vifb(b, f))


def psnr_vifb(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """PSNR as VIFB / MEFB ``metricsPsnr`` compute it: 20 log10(255 / sqrt(MES)), MES = :func:`rmse_vifb`.

    Because the toolbox ``mse`` helper returns sqrt(SSE)/(M N), values are 55-60 dB where the textbook
    :func:`psnr` gives 9-13 dB on the same images; this is the number published VIFB/MEFB tables contain.
    Identical images give inf.
    """
    mes = rmse_vifb(f, a, b)
    return float(20.0 * np.log10(255.0 / np.sqrt(mes))) if mes > 0 else float("inf")
