"""YCbCr BT.601 conversions (torch and numpy) and the SwinFusion chroma rule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rwkvfusion_io.color import fuse_chroma, merge_y_cbcr, rgb_to_ycbcr, ycbcr_to_rgb


def test_known_colours_bt601():
    rgb = np.array([[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # 1 x 4 x 3
    ycc = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(ycc[0, 0], [1.0, 0.5, 0.5], atol=1e-12)       # white: no chroma
    np.testing.assert_allclose(ycc[0, 1], [0.0, 0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(ycc[0, 2], [0.299, 0.5 - 0.168736, 1.0], atol=1e-6)  # JPEG full-range red
    np.testing.assert_allclose(ycc[0, 3], [0.114, 1.0, 0.5 - 0.081312], atol=1e-6)  # blue


def test_round_trip_numpy_torch_and_agreement():
    rng = np.random.default_rng(0)
    rgb = rng.random((7, 9, 3))
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12)
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()  # [1, 3, H, W]
    yt = rgb_to_ycbcr(t)
    assert yt.shape == t.shape and yt.dtype == torch.float32
    torch.testing.assert_close(ycbcr_to_rgb(yt), t, atol=1e-6, rtol=0)
    np.testing.assert_allclose(yt[0].permute(1, 2, 0).numpy(), rgb_to_ycbcr(rgb), atol=1e-6)
    # channel-first numpy via channel_axis, and uint8 on the 0-255 scale
    np.testing.assert_allclose(rgb_to_ycbcr(rgb.transpose(2, 0, 1), channel_axis=0).transpose(1, 2, 0),
                               rgb_to_ycbcr(rgb), atol=1e-12)
    u8 = (rgb * 255).round().astype(np.uint8)
    expected = rgb_to_ycbcr(u8 / 255.0) * 255.0
    expected[..., 1:] += 0.5  # JPEG offset 128 on the 0-255 scale (not 0.5 * 255)
    np.testing.assert_allclose(rgb_to_ycbcr(u8), expected, atol=1e-9)
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(u8), data_range=255), u8, atol=1e-9)
    with pytest.raises(ValueError, match="data_range"):
        rgb_to_ycbcr(rgb, data_range=100)
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_ycbcr(np.zeros((4, 4, 2)))


def test_fuse_chroma_cases():
    a = np.array([[[0.5, 0.5], [0.9, 0.2], [0.7, 0.5]]])   # 1 x 3 x 2 (Cb, Cr)
    b = np.array([[[0.5, 0.5], [0.5, 0.5], [0.3, 0.6]]])
    f = fuse_chroma(a, b)
    np.testing.assert_allclose(f[0, 0], [0.5, 0.5])            # both neutral -> 0.5 (no division by zero)
    np.testing.assert_allclose(f[0, 1], [0.9, 0.2])            # grey b -> a's chroma is copied
    # |0.7-.5| = |0.3-.5| = 0.2 -> mean 0.5; Cr: weights 0 and 0.1 -> 0.6
    np.testing.assert_allclose(f[0, 2], [0.5, 0.6])
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    torch.testing.assert_close(fuse_chroma(ta, tb), torch.from_numpy(f))
    np.testing.assert_array_equal(fuse_chroma(None, b), b)   # one colour source: copy it
    np.testing.assert_allclose(fuse_chroma(a, a), a)         # identical sources: unchanged
    with pytest.raises(ValueError, match="both"):
        fuse_chroma(None, None)
    with pytest.raises(ValueError, match="shape"):
        fuse_chroma(a, b[:, :2])


def test_merge_y_cbcr_rebuilds_rgb():
    rng = np.random.default_rng(1)
    rgb = rng.random((5, 6, 3)) * 0.8 + 0.1
    ycc = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(merge_y_cbcr(ycc[..., 0], ycc[..., 1:]), rgb, atol=1e-12)
    t = torch.from_numpy(ycc).permute(2, 0, 1)[None]
    out = merge_y_cbcr(t[:, :1], t[:, 1:])
    torch.testing.assert_close(out, torch.from_numpy(rgb).permute(2, 0, 1)[None])
