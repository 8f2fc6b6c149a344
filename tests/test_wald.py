"""Wald's protocol utilities: MTF-matched filters, decimation, interp23tap, degradation of real data."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from rwkvfusion_io import wald


@pytest.mark.parametrize("gain,ratio", [(0.29, 4), (0.15, 4), (0.36, 4), (0.23, 2), (0.29, 3)])
def test_gaussian_response_at_nyquist_equals_gain(gain, ratio):
    k = wald.mtf_kernel_1d(gain, ratio)
    x = np.arange(len(k)) - (len(k) - 1) / 2
    response = float((k * np.cos(2 * np.pi * x / (2 * ratio))).sum())  # DTFT at f = 1/(2 ratio)
    assert k.sum() == pytest.approx(1.0) and len(k) == 41
    assert response == pytest.approx(gain, abs=1e-6)


def test_sensor_table_and_aliases():
    assert wald.canonical_sensor("QuickBird") == "QB" and wald.canonical_sensor("GeoEye-1") == "GeoEye1"
    assert wald.canonical_sensor(None) == "none"
    assert np.allclose(wald.sensor_gains("WV3", 8), [0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315])
    assert np.allclose(wald.sensor_gains(None, 5), 0.29)
    assert wald.SENSOR_PAN_GAIN["WV2"] == 0.11
    with pytest.raises(ValueError, match="8 MS bands"):
        wald.sensor_gains("WV2", 4)
    with pytest.raises(ValueError, match="unknown sensor"):
        wald.canonical_sensor("Landsat")


def test_mtf_filter_matches_direct_replicate_filtering():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 2047, (37, 45, 4))
    y = wald.mtf_filter(x, 4, "QB")
    for i, g in enumerate(wald.SENSOR_MS_GAINS["QB"]):
        k = wald.mtf_kernel_1d(g, 4)
        ref = ndimage.correlate1d(ndimage.correlate1d(x[:, :, i], k, axis=0, mode="nearest"), k, axis=1,
                                  mode="nearest")
        assert np.allclose(y[:, :, i], ref, atol=1e-9)
    assert np.allclose(wald.mtf_filter(np.full((20, 24), 5.0), 4, pan=True), 5.0)


def test_decimate_offset_and_interp23tap_keeps_samples():
    x = np.arange(16 * 16, dtype=np.float64).reshape(16, 16)
    assert np.array_equal(wald.decimate(x, 4), x[2::4, 2::4])
    assert np.array_equal(wald.decimate(x, 3), x[1::3, 1::3])
    rng = np.random.default_rng(1)
    lr = rng.normal(size=(10, 12, 3))
    up = wald.interp23tap(lr, 4)
    assert up.shape == (40, 48, 3)
    assert np.allclose(wald.decimate(up, 4), lr, atol=1e-9)  # original samples are kept where decimation reads
    assert np.allclose(wald.interp23tap(np.full((6, 8), 7.0), 2), 7.0)
    with pytest.raises(ValueError, match="power-of-two"):
        wald.interp23tap(lr, 3)
    assert wald.upsample(lr, 3).shape == (30, 36, 3)  # bicubic for other ratios


def test_interp23tap_matches_direct_circular_filtering():
    rng = np.random.default_rng(2)
    lr = rng.normal(size=(9, 7))
    up = np.zeros((18, 14))
    up[1::2, 1::2] = lr
    ref = ndimage.correlate1d(ndimage.correlate1d(up, wald.CDF23, axis=0, mode="wrap"), wald.CDF23, axis=1,
                              mode="wrap")
    assert np.allclose(wald.interp23tap(lr, 2), ref, atol=1e-12)


def test_wald_degrade_shapes_and_checks():
    rng = np.random.default_rng(3)
    ms, pan = rng.uniform(0, 2047, (16, 20, 8)), rng.uniform(0, 2047, (64, 80))
    ms_lr, pan_lr = wald.wald_degrade(ms, pan, 4, "WV3")
    assert ms_lr.shape == (4, 5, 8) and pan_lr.shape == (16, 20)
    with pytest.raises(ValueError, match="ratio=4"):
        wald.wald_degrade(ms, pan[:60], 4, "WV3")
    pair = wald.reduced_resolution_pair(ms, pan, 4, "WV3")
    assert set(pair) == {"gt", "ms", "lms", "pan"} and pair["lms"].shape == ms.shape


@pytest.mark.realdata  # reads ../shared/data; the shared_data fixture skips when it is absent
def test_wald_on_real_pan_data(shared_data):
    import scipy.io

    d = scipy.io.loadmat(shared_data / "pan/WV3_example.mat")
    ms, pan = d["I_MS_LR"].astype(np.float64), d["I_PAN"].astype(np.float64)
    ms_lr, pan_lr = wald.wald_degrade(ms, pan, 4, "WV3")
    assert ms_lr.shape == (8, 8, 8) and pan_lr.shape == (32, 32)
    # low-pass + decimation keeps the band means and lowers the detail
    assert np.allclose(ms_lr.mean(axis=(0, 1)), ms.mean(axis=(0, 1)), rtol=0.05)
    assert np.abs(np.diff(pan_lr, axis=1)).mean() < np.abs(np.diff(pan, axis=1)).mean() * 4
