"""Information-theoretic fusion metrics: EN (entropy) and MI (mutual information)."""
from __future__ import annotations

import numpy as np

from ._common import minmax_255, to_levels


def _entropy_from_counts(counts: np.ndarray, log=np.log2) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * log(p)).sum())


def entropy(f: np.ndarray) -> float:
    """EN: Shannon entropy in bits of the 256-bin histogram of the integer grey levels of F.

    Definition (SPEC Appendix A, VIFB ``metricsEntropy``): levels = uint8(F) (round, saturate to 0..255),
    p = counts / N, EN = -sum p log2 p. A constant image gives 0, a uniform histogram 8.
    """
    return _entropy_from_counts(np.bincount(to_levels(f).ravel(), minlength=256))


def _mutual_information(x_levels: np.ndarray, y_levels: np.ndarray, log) -> float:
    joint = np.bincount((x_levels * 256 + y_levels).ravel(), minlength=256 * 256).reshape(256, 256)
    pxy = joint / joint.sum()
    px, py = pxy.sum(axis=1), pxy.sum(axis=0)
    nz = pxy > 0
    return float((pxy[nz] * log(pxy[nz] / (px[:, None] * py[None, :])[nz])).sum())


def mutual_information_pair(x: np.ndarray, y: np.ndarray) -> float:
    """MI(X, Y) in bits from the 256 x 256 joint histogram of the integer grey levels (uint8 rounding)."""
    return _mutual_information(to_levels(x), to_levels(y), np.log2)


def mutual_information(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """MI = MI(A, F) + MI(B, F) in BITS, 256 bins of the raw integer grey levels (no rescaling).

    This is the Tang/SeAFusion-style convention (joint histogram of uint8 levels) with log base 2, so
    MI(A, A) equals EN(A). For scikit-learn's ``mutual_info_score`` (CDDFuse's evaluator) multiply by ln 2;
    the VIFB convention (min-max scaled, nats) is :func:`mutual_information_vifb`.
    """
    return mutual_information_pair(a, f) + mutual_information_pair(b, f)


def mutual_information_vifb(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """MI in the VIFB convention: each image min-max scaled to 0..1, levels round(x * 255), NATS.

    MI = MI(A, F) + MI(B, F) with natural logarithms (SPEC Appendix A, VIFB ``metricsMutinf``).
    """
    fl = minmax_255(f).astype(np.int64)
    al = minmax_255(a).astype(np.int64)
    bl = minmax_255(b).astype(np.int64)
    return _mutual_information(al, fl, np.log) + _mutual_information(bl, fl, np.log)
