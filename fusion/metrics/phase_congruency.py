"""Phase congruency (Kovesi's ``phasecong3`` as revised in Liu's ``myphasecong3``) and the Qp fusion metric of
Zhao, Laganiere & Liu built on it (MEFB ``metricsQp``)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._common import gauss_filter2

_EPSILON = 1e-4


class PhaseCongruency(NamedTuple):
    """Phase congruency PC (in [0, 1]) and the maximum / minimum moments M, m of its covariance."""

    pc: np.ndarray
    big_m: np.ndarray
    small_m: np.ndarray


def _centred_axis(n: int) -> np.ndarray:
    if n % 2:
        return np.arange(-(n - 1) / 2, (n - 1) / 2 + 1) / (n - 1)
    return np.arange(-n / 2, n / 2) / n


def _lowpass(rows: int, cols: int, cutoff: float = 0.45, order: int = 15) -> np.ndarray:
    """Kovesi's ``lowpassfilter``: Butterworth 1 / (1 + (r / cutoff)^(2 n)), centred on fix(n/2) + 1, then
    ``fftshift`` (not ``ifftshift``: for odd sizes the toolbox's filter is off by one sample, kept)."""
    x = (np.arange(1, cols + 1) - (cols // 2 + 1)) / cols
    y = (np.arange(1, rows + 1) - (rows // 2 + 1)) / rows
    radius = np.sqrt(x[None, :] ** 2 + y[:, None] ** 2)
    return np.fft.fftshift(1.0 / (1.0 + (radius / cutoff) ** (2 * order)))


def phase_congruency(im: np.ndarray, nscale: int = 4, norient: int = 6, min_wavelength: float = 3,
                     mult: float = 2.1, sigma_onf: float = 0.55, d_theta_on_sigma: float = 1.2, k: float = 2.0,
                     cut_off: float = 0.5, g: float = 10) -> PhaseCongruency:
    """``myphasecong3`` (Kovesi 1999/2003, revised by Liu 2006) with its defaults.

    Log-Gabor filters (``nscale`` scales from wavelength 3, factor 2.1, sigma_onf 0.55) times angular
    Gaussians (``norient`` orientations, d_theta/sigma 1.2), applied by FFT; per orientation the energy
    sum(E cos + O sin - |E sin - O cos|) over scales minus the noise threshold T (median-based Rayleigh
    estimate, k = 2, divided by 1.7), weighted by the frequency-spread sigmoid (cut-off 0.5, gain 10).
    PC = sum_o weighted energy / (sum_o sum_s amplitude + 1e-4); M and m are the principal moments of the
    covariance of the per-orientation PC (Kovesi's corner/edge measures).
    """
    im = np.asarray(im, dtype=np.float64)
    rows, cols = im.shape
    imagefft = np.fft.fft2(im)
    theta_sigma = np.pi / norient / d_theta_on_sigma
    x, y = np.meshgrid(_centred_axis(cols), _centred_axis(rows))
    radius = np.sqrt(x * x + y * y)
    radius[rows // 2, cols // 2] = 1.0
    theta = np.arctan2(-y, x)
    radius, theta = np.fft.ifftshift(radius), np.fft.ifftshift(theta)
    sintheta, costheta = np.sin(theta), np.cos(theta)
    lp = _lowpass(rows, cols)
    log_gabor = []
    for s in range(nscale):
        fo = 1.0 / (min_wavelength * mult**s)
        lg = np.exp(-(np.log(radius / fo) ** 2) / (2 * np.log(sigma_onf) ** 2)) * lp
        lg[0, 0] = 0.0
        log_gabor.append(lg)
    total_energy = np.zeros((rows, cols))
    total_sum_an = np.zeros((rows, cols))
    covx2 = np.zeros((rows, cols))
    covy2 = np.zeros((rows, cols))
    covxy = np.zeros((rows, cols))
    for o in range(norient):
        angl = o * np.pi / norient
        ds = sintheta * np.cos(angl) - costheta * np.sin(angl)
        dc = costheta * np.cos(angl) + sintheta * np.sin(angl)
        spread = np.exp(-(np.abs(np.arctan2(ds, dc)) ** 2) / (2 * theta_sigma**2))
        eo, ifft_filters = [], []
        sum_an = np.zeros((rows, cols))
        sum_e = np.zeros((rows, cols))
        sum_o = np.zeros((rows, cols))
        for s in range(nscale):
            filt = log_gabor[s] * spread
            ifft_filters.append(np.real(np.fft.ifft2(filt)) * np.sqrt(rows * cols))
            resp = np.fft.ifft2(imagefft * filt)
            eo.append(resp)
            an = np.abs(resp)
            sum_an += an
            sum_e += resp.real
            sum_o += resp.imag
            if s == 0:
                em_n = float((filt * filt).sum())
                max_an = an
            else:
                max_an = np.maximum(max_an, an)
        x_energy = np.sqrt(sum_e**2 + sum_o**2) + _EPSILON
        mean_e, mean_o = sum_e / x_energy, sum_o / x_energy
        energy = np.zeros((rows, cols))
        for resp in eo:
            e, od = resp.real, resp.imag
            energy += e * mean_e + od * mean_o - np.abs(e * mean_o - od * mean_e)
        median_e2n = float(np.median(np.abs(eo[0]) ** 2))
        noise_power = -median_e2n / np.log(0.5) / em_n
        est_sum_an2 = float(sum((f * f).sum() for f in ifft_filters))
        est_sum_aiaj = float(sum((ifft_filters[i] * ifft_filters[j]).sum()
                                 for i in range(nscale - 1) for j in range(i + 1, nscale)))
        est_noise_energy2 = 2 * noise_power * est_sum_an2 + 4 * noise_power * est_sum_aiaj
        tau = np.sqrt(est_noise_energy2 / 2)
        threshold = (tau * np.sqrt(np.pi / 2) + k * np.sqrt((2 - np.pi / 2) * tau**2)) / 1.7
        energy = np.maximum(energy - threshold, 0.0)
        width = sum_an / (max_an + _EPSILON) / nscale
        weight = 1.0 / (1 + np.exp((cut_off - width) * g))
        total_sum_an += sum_an
        total_energy += weight * energy
        with np.errstate(invalid="ignore", divide="ignore"):
            pc_o = weight * energy / sum_an
        covx, covy = pc_o * np.cos(angl), pc_o * np.sin(angl)
        covx2 += covx**2
        covy2 += covy**2
        covxy += covx * covy
    pc = total_energy / (total_sum_an + _EPSILON)
    covx2 /= norient / 2
    covy2 /= norient / 2
    covxy /= norient
    denom = np.sqrt(covxy**2 + (covx2 - covy2) ** 2) + _EPSILON
    return PhaseCongruency(pc, (covy2 + covx2 + denom) / 2, (covy2 + covx2 - denom) / 2)


_QP_THRESHOLD = 0.1
_QP_C = 1e-4


def _masked_correlation(x1: np.ndarray, x2: np.ndarray, xmax: np.ndarray, xf: np.ndarray,
                        m1: np.ndarray, m2: np.ndarray, m3: np.ndarray) -> float:
    g = lambda z: gauss_filter2(z, 11, 1.5, "same")  # noqa: E731
    x1, x2, xmax = m1 * x1, m2 * x2, m3 * xmax
    mf = g(xf)
    sf = g(xf * xf) - mf * mf
    best = None
    for x, m in ((x1, m1), (x2, m2), (xmax, m3)):
        mx = g(x)
        sx = g(x * x) - mx * mx
        sxf = g(x * xf) - mx * mf
        r = np.where(m, (sxf + _QP_C) / (np.sqrt(np.abs(sx * sf)) + _QP_C), 0.0)
        best = r if best is None else np.maximum(best, r)
    return float(best.sum() / m3.sum())


def qp(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qp (Zhao, Laganiere & Liu 2007), MEFB ``metricsQp`` (Liu's ``metricZhao``).

    From :func:`phase_congruency` of A, B, F: masks PC_A > 0.1, PC_B > 0.1 and PC_max > 0.1, where
    (PC, M, m)_max is taken from A where PC_A > PC_B, else from B. For each feature P in (PC, M, m): with a
    normalised 11 x 11 Gaussian (sigma 1.5, 'same', zero padding) local statistics of the masked feature maps
    against F's (unmasked) map, r = (s_XF + C) / (sqrt(|s_X s_F|) + C), C = 1e-4, inside each mask (0 outside);
    Q_P = sum(max(r_A, r_B, r_max)) / |mask_max|. Qp = Q_PC Q_M Q_m.
    """
    pa, pb, pf = phase_congruency(a), phase_congruency(b), phase_congruency(f)
    pick = pa.pc > pb.pc
    m1, m2 = pa.pc > _QP_THRESHOLD, pb.pc > _QP_THRESHOLD
    out = 1.0
    for fa, fb, ff in zip(pa, pb, pf):
        fmax = np.where(pick, fa, fb)
        m3 = np.where(pick, pa.pc, pb.pc) > _QP_THRESHOLD
        out *= _masked_correlation(fa, fb, fmax, ff, m1, m2, m3)
    return out
