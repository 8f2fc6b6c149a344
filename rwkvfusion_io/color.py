"""Colour handling for the fusion tasks: YCbCr (ITU-R BT.601, full range, JPEG/JFIF constants) and the
SwinFusion chroma fusion rule.

Layouts: torch tensors are channel-first `[..., 3, H, W]` (channel axis -3); numpy arrays are `H x W x 3`
(channel axis -1, any leading dims allowed); pass `channel_axis` to override. Float inputs are on the [0, 1]
scale (chroma offset 0.5); integer inputs (e.g. uint8) are converted to float on their 0-255 scale (offset
128, JPEG). The output is float; to convert float data on the 0-255 scale pass `data_range=255`. The forward matrix is the exact BT.601 one and the inverse is its exact inverse,
so `ycbcr_to_rgb(rgb_to_ycbcr(x)) == x` up to float rounding.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# Y, Cb, Cr rows (BT.601 luma 0.299/0.587/0.114; Cb = (B - Y) / 1.772, Cr = (R - Y) / 1.402)
_RGB2YCBCR = np.array([[0.299, 0.587, 0.114],
                       [-0.299 / 1.772, -0.587 / 1.772, 0.886 / 1.772],
                       [0.701 / 1.402, -0.587 / 1.402, -0.114 / 1.402]], dtype=np.float64)
_YCBCR2RGB = np.linalg.inv(_RGB2YCBCR)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _scale_of(x: Any, data_range: float | None = None) -> float:
    """Chroma offset: 0.5 for data_range 1 (default for float data), 128 for data_range 255 (default for ints)."""
    if data_range is None:
        is_float = x.is_floating_point() if _is_torch(x) else np.issubdtype(np.asarray(x).dtype, np.floating)
        data_range = 1.0 if is_float else 255.0
    if data_range == 1.0:
        return 0.5
    if data_range == 255.0:
        return 128.0
    raise ValueError(f"colour: data_range must be 1 or 255, got {data_range}")


def _apply(x: Any, matrix: np.ndarray, pre: np.ndarray, post: np.ndarray, channel_axis: int | None) -> Any:
    """y = matrix @ (x + pre) + post along the channel axis."""
    if _is_torch(x):
        import torch

        axis = -3 if channel_axis is None else channel_axis
        if x.ndim < 3 or x.shape[axis] != 3:
            raise ValueError(f"colour: expected 3 channels on axis {axis} of a [..., 3, H, W] tensor, got {tuple(x.shape)}")
        xf = x if x.is_floating_point() else x.double()
        xm = torch.movedim(xf, axis, -1)
        m = torch.as_tensor(matrix, dtype=xf.dtype, device=xf.device)
        pre_t = torch.as_tensor(pre, dtype=xf.dtype, device=xf.device)
        post_t = torch.as_tensor(post, dtype=xf.dtype, device=xf.device)
        return torch.movedim((xm + pre_t) @ m.T + post_t, -1, axis)
    arr = np.asarray(x)
    axis = -1 if channel_axis is None else channel_axis
    if arr.ndim < 3 or arr.shape[axis] != 3:
        raise ValueError(f"colour: expected 3 channels on axis {axis} of an H x W x 3 array, got {arr.shape}")
    af = arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)
    am = np.moveaxis(af, axis, -1)
    out = (am + pre.astype(af.dtype)) @ matrix.T.astype(af.dtype) + post.astype(af.dtype)
    return np.moveaxis(out, -1, axis)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of an ``[..., 3]`` array -> ``[...]`` (the Y of :func:`rgb_to_ycbcr`;
    summed blue first, as OpenCV-based readers did, so scores computed from it match theirs to the last bit)."""
    return 0.114 * rgb[..., 2] + 0.587 * rgb[..., 1] + 0.299 * rgb[..., 0]


def rgb_to_ycbcr(rgb: Any, *, channel_axis: int | None = None, data_range: float | None = None) -> Any:
    """RGB -> YCbCr (BT.601 full range): Y in [0, 1], Cb/Cr centred on 0.5 (data_range 255: 0-255, offset 128;
    the default data_range is 1 for float input and 255 for integer input)."""
    off = _scale_of(rgb, data_range)
    return _apply(rgb, _RGB2YCBCR, np.zeros(3), np.array([0.0, off, off]), channel_axis)


def ycbcr_to_rgb(ycbcr: Any, *, channel_axis: int | None = None, data_range: float | None = None) -> Any:
    """YCbCr -> RGB, the exact inverse of `rgb_to_ycbcr` with the same data_range (no clipping)."""
    off = _scale_of(ycbcr, data_range)
    return _apply(ycbcr, _YCBCR2RGB, np.array([0.0, -off, -off]), np.zeros(3), channel_axis)


def fuse_chroma(cbcr_a: Any | None, cbcr_b: Any | None, *, center: float | None = None) -> Any:
    """Fuse two sources' chroma, per channel and pixel (SwinFusion):

        C = (C_a |C_a - c| + C_b |C_b - c|) / (|C_a - c| + |C_b - c|),  and C = c where both equal c,

    with c = 0.5 (float) or 128 (integer data). With one colour source (the other None, or grey, i.e. all c)
    its chroma is copied. Inputs: [..., 2, H, W] tensors or H x W x 2 arrays (any shape, same for both).
    """
    if cbcr_a is None and cbcr_b is None:
        raise ValueError("fuse_chroma: both cbcr_a and cbcr_b are None; at least one colour source is needed")
    if cbcr_a is None or cbcr_b is None:
        src = cbcr_b if cbcr_a is None else cbcr_a
        return src.clone() if _is_torch(src) else np.array(src, copy=True)
    if tuple(cbcr_a.shape) != tuple(cbcr_b.shape):
        raise ValueError(f"fuse_chroma: cbcr_a {tuple(cbcr_a.shape)} and cbcr_b {tuple(cbcr_b.shape)} differ in shape")
    c = _scale_of(cbcr_a) if center is None else center
    if _is_torch(cbcr_a):
        import torch

        a = cbcr_a if cbcr_a.is_floating_point() else cbcr_a.double()
        b = cbcr_b.to(a.dtype)
        wa, wb = (a - c).abs(), (b - c).abs()
        den = wa + wb
        return torch.where(den > 0, (a * wa + b * wb) / torch.where(den > 0, den, torch.ones_like(den)),
                           torch.full_like(a, c))
    a = np.asarray(cbcr_a)
    a = a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)
    b = np.asarray(cbcr_b).astype(a.dtype)
    wa, wb = np.abs(a - c), np.abs(b - c)
    den = wa + wb
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, (a * wa + b * wb) / safe, np.asarray(c, dtype=a.dtype))


def merge_y_cbcr(y: Any, cbcr: Any, *, channel_axis: int | None = None) -> Any:
    """Fused Y ([..., 1, H, W] tensor / H x W (x 1) array) + CbCr -> RGB, clipped to the data range."""
    if _is_torch(y):
        import torch

        axis = -3 if channel_axis is None else channel_axis
        rgb = ycbcr_to_rgb(torch.cat([y, cbcr.to(y.dtype)], dim=axis), channel_axis=axis)
        return rgb.clamp(0.0, 1.0 if y.is_floating_point() else 255.0)
    y = np.asarray(y)
    axis = -1 if channel_axis is None else channel_axis
    if y.ndim == np.asarray(cbcr).ndim - 1:
        y = np.expand_dims(y, axis)
    rgb = ycbcr_to_rgb(np.concatenate([y, np.asarray(cbcr).astype(y.dtype)], axis=axis), channel_axis=axis)
    return np.clip(rgb, 0.0, 1.0 if np.issubdtype(y.dtype, np.floating) else 255.0)


__all__ = ["rgb_to_ycbcr", "ycbcr_to_rgb", "fuse_chroma", "merge_y_cbcr"]



def _preview_bands(c: int) -> list[int]:
    return [0, 0, 0] if c < 3 else [c // 6, c // 2, (5 * c) // 6]


def false_colour_stretch(x: np.ndarray) -> tuple[float, float]:
    """The 2-98 % percentiles of the three preview bands of ``x`` [C, H, W] (``false_colour``'s default)."""
    v = x[_preview_bands(x.shape[0])]
    return float(np.percentile(v, 2)), float(np.percentile(v, 98))


def false_colour(x: np.ndarray, stretch: tuple[float, float] | None = None) -> np.ndarray:
    """[C, H, W] multispectral -> [H, W, 3] RGB preview in [0, 1]: three spread bands, linearly stretched from
    ``stretch`` = (lo, hi), default the image's own 2-98 % (pass the reference's to compare methods alike)."""
    lo, hi = stretch if stretch is not None else false_colour_stretch(x)
    rgb = np.stack([x[i] for i in _preview_bands(x.shape[0])], axis=2)
    return np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1)
