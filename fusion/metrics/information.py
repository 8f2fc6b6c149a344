"""Information-theoretic fusion metrics: EN (entropy) and MI (mutual information)."""
from __future__ import annotations

import numpy as np

from ._common import minmax_255, to_levels


def _entropy_from_counts(counts: np.ndarray, log=np.log2) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * log(p)).sum())


def entropy(f: np.ndarray) -> float:
    """EN: Shannon entropy in bits of the 256-bin histogram of the integer grey levels of F.

    Definition (VIFB / MEFB ``metricsEntropy``): levels = uint8(F) (round, saturate to 0..255),
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

    MI = MI(A, F) + MI(B, F) with natural logarithms (VIFB ``metricsMutinf``).
    """
    fl = minmax_255(f).astype(np.int64)
    al = minmax_255(a).astype(np.int64)
    bl = minmax_255(b).astype(np.int64)
    return _mutual_information(al, fl, np.log) + _mutual_information(bl, fl, np.log)


# ---------------------------------------------------------------- MEFB / VIFB information metrics
def _joint_probability(x_levels: np.ndarray, y_levels: np.ndarray) -> np.ndarray:
    """256 x 256 joint probability P[i, j] = P(X = i, Y = j) of integer levels 0..255."""
    joint = np.bincount((x_levels * 256 + y_levels).ravel(), minlength=256 * 256).reshape(256, 256)
    return joint / joint.sum()


def _plogp_sum(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


def _mi_entropies(x_levels: np.ndarray, y_levels: np.ndarray) -> tuple[float, float, float]:
    """(MI, H(X), H(Y)) in bits from the joint histogram (Liu's ``mutual_info.m``: MI = H_x + H_y - H_xy)."""
    p = _joint_probability(x_levels, y_levels)
    hx, hy = _plogp_sum(p.sum(axis=1)), _plogp_sum(p.sum(axis=0))
    return hx + hy - _plogp_sum(p), hx, hy


def cross_entropy(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """CE (Bulanon et al. 2009), VIFB / MEFB ``metricsCross_entropy``; LOWER is better.

    CE = (D(A || F) + D(B || F)) / 2 with D(X || F) = sum_k p_X(k) log2(p_X(k) / p_F(k)) over the 256-bin
    histograms of the integer grey levels, summed only over levels where BOTH p_X and p_F are non-zero (the
    toolbox's guard; so D can be negative when F misses levels of X). The toolbox indexes its histogram by
    the pixel value, so inputs must be integer levels; here levels are uint8(x) (round, saturate).
    Identical images give 0.
    """
    pf = np.bincount(to_levels(f).ravel(), minlength=256) / f.size

    def _d(x: np.ndarray) -> float:
        px = np.bincount(to_levels(x).ravel(), minlength=256) / x.size
        keep = (px > 0) & (pf > 0)
        return float((px[keep] * np.log2(px[keep] / pf[keep])).sum())

    return 0.5 * (_d(a) + _d(b))


def _levels_normalize1(x: np.ndarray) -> np.ndarray:
    """Liu's ``normalize1`` (used by MEFB's NMI, Qncie, TE): min-max to 0..255, rounded, as int levels."""
    return minmax_255(x).astype(np.int64)


def nmi(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """NMI (Hossny et al. 2008), MEFB ``metricsNMI`` (Liu's ``metricMI`` option 1).

    Each image ``normalize1``-d (min-max to 0..255, rounded); NMI = 2 (MI(A, F) / (H(A) + H(F)) +
    MI(B, F) / (H(B) + H(F))), MI and entropies in bits from the 256 x 256 joint histogram. F = A = B
    gives 2, independent images 0.
    """
    fl, al, bl = (_levels_normalize1(x) for x in (f, a, b))
    out = 0.0
    for xl in (al, bl):
        mi, hx, hf = _mi_entropies(xl, fl)
        out += mi / (hx + hf)
    return 2.0 * out


def qncie(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Q_NCIE, nonlinear correlation information entropy (Wang, Shen & Jin 2008), MEFB ``metricsQncie``.

    Images ``normalize1``-d; NCC(X, Y) = MI(X, Y) / log2(256) (bits, 256 bins); R = [[1, NCC_AB, NCC_AF],
    [NCC_AB, 1, NCC_BF], [NCC_AF, NCC_BF, 1]] with eigenvalues r_i; H_R = -sum (r_i / 3) log_256(r_i / 3);
    Q_NCIE = 1 - H_R. Terms with r_i <= 0 contribute 0 (the x log x -> 0 limit; MATLAB would go complex).
    Bounds: 0 <= Q_NCIE <= 1 (R = identity -> 0; all NCC = 1 -> 1).
    """
    fl, al, bl = (_levels_normalize1(x) for x in (f, a, b))
    ncc = lambda x, y: _mi_entropies(x, y)[0] / 8.0  # noqa: E731
    n_ab, n_af, n_bf = ncc(al, bl), ncc(al, fl), ncc(bl, fl)
    r = np.linalg.eigvalsh(np.array([[1.0, n_ab, n_af], [n_ab, 1.0, n_bf], [n_af, n_bf, 1.0]]))
    r = r[r > 0] / 3.0
    hr = -float((r * np.log2(r)).sum()) / 8.0
    return 1.0 - hr


TSALLIS_Q = 1.85  # Cvejic et al.'s constant


def _tsallis(x_levels: np.ndarray, f_levels: np.ndarray, q: float) -> float:
    p = _joint_probability(x_levels, f_levels)  # rows: X, columns: F
    px, pf = p.sum(axis=1), p.sum(axis=0)
    # the toolbox pairs P(X=i, F=j) with marg_F(i) marg_X(j) (its ``sum(h)`` / ``sum(h')`` are swapped)
    buff = pf[:, None] * px[None, :]
    keep = (buff != 0) & (p != 0)
    result = float((p[keep] ** q / buff[keep] ** (q - 1)).sum())
    return (1.0 - result) / (1.0 - q)


def tsallis_entropy(f: np.ndarray, a: np.ndarray, b: np.ndarray, q: float = TSALLIS_Q) -> float:
    """TE, Tsallis-entropy fusion metric (Cvejic, Canagarajah & Bull 2006), MEFB ``metricsTE``, q = 1.85.

    Images ``normalize1``-d; TE = I_q(A, F) + I_q(B, F), I_q(X, F) = (1 - S) / (1 - q) with
    S = sum_ij P(i, j)^q / (m_F(i) m_X(j))^(q - 1), P(i, j) = P(X = i, F = j). Note the toolbox's pairing of
    the joint entry (i, j) with the F marginal at i and the X marginal at j (its marginals are transposed);
    this convention is followed so values equal the published tables. For F = X the sum is
    sum_k p_k^(2 - q), the same either way.
    """
    fl, al, bl = (_levels_normalize1(x) for x in (f, a, b))
    return _tsallis(al, fl, q) + _tsallis(bl, fl, q)
