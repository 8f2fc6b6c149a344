"""Human-visual-system fusion metrics: Qcb (Chen & Blum) and Qcv (Chen & Varshney), VIFB code."""
from __future__ import annotations

import functools

import numpy as np
from scipy import fft as sp_fft

from ._common import filter2, frequency_filter, memo_by_content, minmax_255, radial_frequency


def _gauss31_unnormalised(sigma: float) -> np.ndarray:
    # 31 x 31 Gaussian scaled by 1/(2 pi sigma^2) (not sum-normalised): separable factor of it
    x = np.arange(-15, 16, dtype=np.float64)
    return np.exp(-(x**2) / (2 * sigma**2)) / np.sqrt(2 * np.pi * sigma**2)


_G1, _G2 = _gauss31_unnormalised(2.0), _gauss31_unnormalised(4.0)


@functools.lru_cache(maxsize=8)
def _gauss_spectra(h: int, w: int) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """FFTs of the two 31 x 31 Gaussians on a fast padded grid for a linear ('same') convolution of h x w."""
    shape = (sp_fft.next_fast_len(h + 30), sp_fft.next_fast_len(w + 30))
    return shape, sp_fft.fft2(np.outer(_G1, _G1), shape), sp_fft.fft2(np.outer(_G2, _G2), shape)


@functools.lru_cache(maxsize=8)
def _qcb_csf(h: int, w: int) -> np.ndarray:
    """DoG contrast sensitivity S(r) = exp(-(r/f0)^2) - a exp(-(r/f1)^2) on the freqspace grid (u, v *= W/30, H/30)."""
    r = radial_frequency(h, w, 30.0)
    return np.exp(-((r / 15.3870) ** 2)) - 0.7622 * np.exp(-((r / 1.3456) ** 2))


@memo_by_content()
def _qcb_contrast(x: np.ndarray) -> np.ndarray:
    fx = frequency_filter(x, _qcb_csf(*x.shape))
    # filter2(G, fx, 'same') of the (symmetric) 31 x 31 Gaussians as one zero-padded FFT of fx times both
    # kernels' spectra: 3 transforms instead of the 6 two separate convolutions need
    h, w = x.shape
    shape, s1, s2 = _gauss_spectra(h, w)
    spec = sp_fft.fft2(fx, shape)
    num = sp_fft.ifft2(spec * s1)[15 : 15 + h, 15 : 15 + w]
    den = sp_fft.ifft2(spec * s2)[15 : 15 + h, 15 : 15 + w]
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.abs(num - den) / np.abs(den)  # |num / den - 1| without a complex division
        c2 = c * c
        out = c2 * c / (c2 + 1e-4)
    out.setflags(write=False)
    return out


def qcb(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qcb (Chen & Blum 2009), VIFB ``metricsQcb`` with the DoG contrast sensitivity filter.

    Images min-max scaled to 0..255 and rounded; CSF S(r) = exp(-(r/f0)^2) - a exp(-(r/f1)^2)
    (f0 = 15.3870, f1 = 1.3456, a = 0.7622) on MATLAB's ``freqspace`` grid with u *= W/30, v *= H/30;
    local contrast C = filter2(G1, X)/filter2(G2, X) - 1 (31 x 31 Gaussians, sigma 2 and 4, scaled by
    1/(2 pi sigma^2)), kept complex as MATLAB does, C = |C|, C' = C^3 / (C^2 + 1e-4);
    Q_XF = min ratio of C'_X, C'_F; saliency lambda_X = C'_X^2 / (C'_A^2 + C'_B^2);
    Qcb = mean(lambda_A Q_AF + lambda_B Q_BF).
    """
    a, b, f = minmax_255(a), minmax_255(b), minmax_255(f)
    ca, cb, cf = (_qcb_contrast(x) for x in (a, b, f))
    with np.errstate(divide="ignore", invalid="ignore"):
        q_af = np.where(ca < cf, ca / cf, cf / ca)
        q_bf = np.where(cb < cf, cb / cf, cf / cb)
        lam_a = ca**2 / (ca**2 + cb**2)
        lam_b = cb**2 / (ca**2 + cb**2)
        return float(np.mean(lam_a * q_af + lam_b * q_bf))


_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
_SOBEL_Y = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64)


def _block_reduce(x: np.ndarray, size: int, op: str) -> np.ndarray:
    """MATLAB ``blkproc(x, [size size], ...)``: partial border blocks zero-padded to size x size."""
    h, w = x.shape
    ph, pw = -h % size, -w % size
    x = np.pad(x, ((0, ph), (0, pw)))
    blocks = x.reshape(x.shape[0] // size, size, x.shape[1] // size, size)
    return blocks.sum(axis=(1, 3)) if op == "sum" else blocks.mean(axis=(1, 3))


@memo_by_content()
def _qcv_gradient(x: np.ndarray) -> np.ndarray:
    """Squared Sobel magnitude gx^2 + gy^2 (``filter2``, zero padding) of a min-max scaled image."""
    gx, gy = filter2(_SOBEL_X, x), filter2(_SOBEL_Y, x)
    g2 = gx * gx + gy * gy
    g2.setflags(write=False)
    return g2


def _qcv_saliency(x: np.ndarray, block: int, alpha: float) -> np.ndarray:
    g2 = _qcv_gradient(x)
    g_alpha = g2 * g2 * np.sqrt(g2) if alpha == 5.0 else np.sqrt(g2) ** alpha
    return _block_reduce(g_alpha, block, "sum")


def qcv(f: np.ndarray, a: np.ndarray, b: np.ndarray, *, block: int = 16, alpha: float = 5.0) -> float:
    """Qcv (Chen & Varshney 2007), VIFB ``metricsQcv``; LOWER is better.

    Images min-max scaled to 0..255 and rounded; Sobel by ``filter2`` (kx = [[-1,0,1],[-2,0,2],[-1,0,1]],
    ky = its transpose sign-flipped), g = sqrt(gx^2 + gy^2); 16 x 16 blocks (``blkproc``, border blocks
    zero-padded); saliency lambda_X = sum g_X^alpha (alpha = 5); D_X = X - F filtered in frequency with the
    Mannos-Sakrison CSF m(r) = 2.6 (0.0192 + 0.144 r) exp(-(0.144 r)^1.1), u *= W/8, v *= H/8; block
    distortion = mean of (filtered D_X)^2; Qcv = sum(lambda_A D_A + lambda_B D_B) / sum(lambda_A + lambda_B).
    The filtered differences are real up to rounding (the CSF is even), so their real part is used.
    """
    a, b, f = minmax_255(a), minmax_255(b), minmax_255(f)
    h, w = f.shape
    lam_a, lam_b = _qcv_saliency(a, block, alpha), _qcv_saliency(b, block, alpha)
    r = radial_frequency(h, w, 8.0)
    csf = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
    d_a = _block_reduce(frequency_filter(a - f, csf).real ** 2, block, "mean")
    d_b = _block_reduce(frequency_filter(b - f, csf).real ** 2, block, "mean")
    den = float((lam_a + lam_b).sum())
    return float((lam_a * d_a + lam_b * d_b).sum() / den) if den > 0 else float("nan")
