"""The pansharpening toolbox's MTF-matched filters (Vivone et al., ``genMTF.m`` / ``MTF.m``) and MATLAB's
bicubic ``imresize`` reduction, as the toolbox's full-resolution indexes (``D_lambda_K``, ``D_s``) use them."""
from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

#: ``genMTF``'s Nyquist gains per sensor (band order as delivered); any other sensor gets 0.3 per band.
TOOLBOX_MS_GAINS: dict[str, tuple[float, ...]] = {
    "QB": (0.34, 0.32, 0.30, 0.22),
    "IKONOS": (0.26, 0.28, 0.29, 0.28),
    "GeoEye1": (0.23, 0.23, 0.23, 0.23),
    "WV4": (0.23, 0.23, 0.23, 0.23),
    "WV2": (0.35,) * 7 + (0.27,),
    "WV3": (0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315),
}
TOOLBOX_GENERIC_GAIN = 0.3
MTF_SIZE = 41


def toolbox_gains(sensor: str | None, n_bands: int) -> tuple[float, ...]:
    """``genMTF``'s GNyq vector for ``sensor`` (names as :func:`rwkvfusion_io.wald.canonical_sensor` accepts them)."""
    from rwkvfusion_io.wald import canonical_sensor

    key = canonical_sensor(sensor)
    gains = TOOLBOX_MS_GAINS.get(key)
    if gains is None:
        return (TOOLBOX_GENERIC_GAIN,) * n_bands
    if len(gains) != n_bands:
        raise ValueError(f"sensor {key} has {len(gains)} bands in the toolbox table, image has {n_bands}")
    return gains


def _fsamp2(hd: np.ndarray) -> np.ndarray:
    """MATLAB ``fsamp2`` (frequency sampling) for an odd-sized, centred desired response ``hd``."""
    h = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(hd)))
    return np.real(h[::-1, ::-1])


def _huang_window(w1: np.ndarray) -> np.ndarray:
    """``fwind1``'s circular 2-D window from a symmetric 1-D window (Huang's method, linear interpolation)."""
    n = len(w1)
    t = (np.arange(n) - (n - 1) / 2) * (2.0 / (n - 1))
    t12 = np.sqrt(t[None, :] ** 2 + t[:, None] ** 2)
    w = np.interp(t12, t, w1)
    w[(t12 < t[0]) | (t12 > t[-1])] = 0.0
    return w


@functools.lru_cache(maxsize=64)
def gen_mtf_kernel(gain: float, ratio: int, size: int = MTF_SIZE) -> np.ndarray:
    """One band of ``genMTF``: alpha = sqrt(((N-1) fcut / 2)^2 / (-2 ln G)), fcut = 1/ratio; Hd =
    fspecial('gaussian', N, alpha) / max (the desired frequency response, a Gaussian equal to G at the
    low-resolution Nyquist frequency); h = fwind1(Hd, kaiser(N)) (Kaiser beta 0.5, Huang's circular window).

    Windowing lowers the response slightly: for ratio 4 and G = 0.23 (GeoEye-1) the kernel sums to 0.9985 (DC
    gain) and its response at 1/8 cycle/pixel is 0.214; for G = 0.3, 0.9987 and 0.282.
    """
    alpha = np.sqrt(((size - 1) * (1.0 / ratio) / 2) ** 2 / (-2 * np.log(gain)))
    r = np.arange(size) - (size - 1) / 2
    hd = np.exp(-(r[None, :] ** 2 + r[:, None] ** 2) / (2 * alpha**2))
    hd = hd / hd.max()
    h = _fsamp2(hd) * _huang_window(np.kaiser(size, 0.5))
    h.setflags(write=False)
    return h


def mtf_filter_toolbox(img: np.ndarray, sensor: str | None, ratio: int) -> np.ndarray:
    """Toolbox ``MTF(I, sensor, ratio)``: each band filtered with its :func:`gen_mtf_kernel`,
    ``imfilter(.., 'replicate')`` (same size, no decimation)."""
    x = np.asarray(img, dtype=np.float64)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[:, :, None]
    gains = toolbox_gains(sensor, x.shape[2])
    out = np.empty_like(x)
    for b, g in enumerate(gains):
        out[:, :, b] = ndimage.correlate(x[:, :, b], gen_mtf_kernel(float(g), int(ratio)), mode="nearest")
    return out[:, :, 0] if squeeze else out


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _resize_weights(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``imresize`` contributions: (indices [out, P] 0-based, weights [out, P]) for bicubic with
    antialiasing when shrinking, symmetric boundary handling."""
    width = 4.0
    if scale < 1:
        kernel = lambda d: scale * _cubic(scale * d)  # noqa: E731
        width = width / scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    p = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]
    w = kernel(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    idx = aux[np.mod(idx - 1, 2 * in_len).astype(np.int64)]
    keep = np.any(w != 0, axis=0)
    return idx[:, keep], w[:, keep]


def imresize_bicubic(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(img, scale)`` (default bicubic, antialiasing on shrink) for float 2-D/3-D arrays;
    output size ceil(scale * size); rows resized first, then columns (MATLAB's order for equal scales)."""
    x = np.asarray(img, dtype=np.float64)
    out = x
    for axis in (0, 1):
        n = x.shape[axis]
        idx, w = _resize_weights(n, int(np.ceil(n * scale)), scale)
        moved = np.moveaxis(out, axis, 0)
        res = np.einsum("op,op...->o...", w, moved[idx])
        out = np.moveaxis(res, 0, axis)
    return out
