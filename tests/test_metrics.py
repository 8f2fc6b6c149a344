"""Fusion, pansharpening and HMIF metrics: closed forms, metamorphic relations, independent references,
real data (``realdata``) and the ``metrics`` command."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import ndimage, signal

from fusion.metrics import (
    FUSION_METRICS,
    average_gradient,
    entropy,
    ergas,
    fusion_metrics,
    hmif_metrics,
    mutual_information,
    mutual_information_pair,
    mutual_information_vifb,
    pansharpening_metrics,
    psnr,
    psnr_pair,
    q2n,
    qabf,
    qcv,
    rgb2gray,
    sam,
    scc,
    spatial_frequency,
    ssim,
    ssim_pair,
    standard_deviation,
    uqi_blocks,
    vif,
    vifp,
)
from fusion.metrics._common import filter2, gauss_filter2, radial_frequency
from fusion.metrics.pansharpening import onion_mult


@pytest.fixture(scope="module")
def scene():
    """Two natural 128 x 160 sources (camera, moon) and their average, float 0..255."""
    from skimage import data

    a = data.camera()[100:228, 150:310].astype(np.float64)
    b = data.moon()[200:328, 100:260].astype(np.float64)
    return a, b, 0.5 * (a + b)


# ---------------------------------------------------------------- closed forms
def test_constant_image_has_zero_sf_ag_en_sd():
    f = np.full((40, 50), 77.0)
    assert spatial_frequency(f) == 0.0
    assert average_gradient(f) == 0.0
    assert entropy(f) == 0.0
    assert standard_deviation(f) == 0.0


def test_uniform_histogram_entropy_is_8_bits():
    f = np.tile(np.arange(256, dtype=np.uint8), (64, 1))  # every level 64 times
    assert entropy(f) == pytest.approx(8.0, abs=1e-12)
    two = np.tile(np.array([0, 255] * 8, dtype=np.float64), (4, 1))
    assert entropy(two) == pytest.approx(1.0, abs=1e-12)


def test_sf_ag_sd_closed_forms():
    # horizontal ramp of slope 3: row differences 0, column differences 3 -> SF = 3;
    # MATLAB gradient gives gx = 3 everywhere (one-sided at borders too), gy = 0 -> AG = 3/sqrt(2) H W/((H-1)(W-1))
    h, w = 20, 30
    f = np.tile(3.0 * np.arange(w), (h, 1))
    assert spatial_frequency(f) == pytest.approx(3.0)
    assert average_gradient(f) == pytest.approx(3 / math.sqrt(2) * h * w / ((h - 1) * (w - 1)))
    assert standard_deviation(np.array([[0.0, 2.0], [0.0, 2.0]])) == pytest.approx(1.0)  # population SD


def test_identical_images_ceilings(scene):
    a, _, _ = scene
    m = fusion_metrics(a, a, a)
    assert m["SSIM"] == pytest.approx(2.0, abs=1e-12)  # 1 per source, summed
    assert m["VIF"] == pytest.approx(2.0, abs=1e-6)
    assert m["Qy"] == pytest.approx(1.0, abs=1e-12)
    assert m["Qcb"] == pytest.approx(1.0, abs=1e-12)
    assert m["Qcv"] == pytest.approx(0.0, abs=1e-9)
    assert m["CC"] == pytest.approx(1.0, abs=1e-12)
    assert m["PSNR"] == math.inf
    assert m["MI"] == pytest.approx(2 * entropy(a), abs=1e-9)


def test_qabf_ceiling_derived_from_constants():
    # Values on a grid of 16 grey levels make every non-zero Sobel strength >= 16, so the strength sigmoid
    # Tg / (1 + exp(kg (g - Dg))) equals Tg to double precision (exp(-15 * 15.5) ~ 1e-101). With F == A == B
    # the toolbox quirk sets G = gF (not 1) only where it does not matter here, and A_XF = 1, so
    # Qabf = Tg * Ta / (1 + exp(ka (1 - Da))) = 0.9994 * 0.9879 / (1 + exp(-4.4)).
    tg, ta, ka, da = 0.9994, 0.9879, -22.0, 0.8
    expected = tg * ta / (1 + math.exp(ka * (1 - da)))
    assert expected == pytest.approx(0.97533, abs=1e-5)
    rng = np.random.default_rng(0)
    f = 16.0 * rng.integers(0, 16, size=(48, 56))
    assert qabf(f, f, f) == pytest.approx(expected, abs=1e-12)
    assert qabf(f, f, f) < 1.0


def test_qabf_equal_strength_quirk():
    # Where gX == gF the toolbox uses G = gF itself: a strength of 0.5 gives the sigmoid's midpoint Tg / 2.
    g = np.array([0.5, 2.0])
    import importlib

    q = importlib.import_module("fusion.metrics.qabf")._edge_preservation(g, np.zeros(2), g, np.zeros(2))
    qa = 0.9879 / (1 + math.exp(-22 * 0.2))
    assert q[0] == pytest.approx(0.9994 / 2 * qa, abs=1e-12)
    assert q[1] == pytest.approx(0.9994 / (1 + math.exp(-15 * 1.5)) * qa, abs=1e-12)


def test_mi_of_image_with_itself_is_its_entropy(scene):
    a, b, _ = scene
    assert mutual_information_pair(a, a) == pytest.approx(entropy(a), abs=1e-10)
    assert mutual_information(a, a, b) == pytest.approx(entropy(a) + mutual_information_pair(b, a), abs=1e-10)
    # VIFB convention: nats of min-max scaled levels; an image already spanning 0..255 keeps its levels
    full = np.tile(np.arange(256.0), (8, 1))
    assert mutual_information_vifb(full, full, full) == pytest.approx(2 * 8 * math.log(2), abs=1e-10)


def test_psnr_of_known_mse(scene):
    a, _, _ = scene
    f = a + 5.0  # MSE 25 to A; to B = A - 3 the MSE is 64
    assert psnr(f, a, a) == pytest.approx(10 * math.log10(255**2 / 25))
    assert psnr(f, a, a - 3.0) == pytest.approx(10 * math.log10(255**2 / ((25 + 64) / 2)))


def test_rgb2gray_matlab_weights():
    rgb = np.zeros((2, 2, 3))
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 50, 200
    assert rgb2gray(rgb)[0, 0] == pytest.approx(0.298936021293775 * 100 + 0.587043074451121 * 50
                                                + 0.114020904255103 * 200)
    assert rgb2gray(rgb.astype(np.uint8))[0, 0] == 82.0  # 82.04... rounded, as MATLAB returns uint8


def test_per_channel_mode_matches_grey_for_grey_images(scene):
    a, b, f = scene
    rep = lambda x: np.repeat(x[..., None], 3, axis=2)  # noqa: E731
    grey = fusion_metrics(f, a, b)
    per = fusion_metrics(rep(f), rep(a), b, color="per_channel")
    for k in FUSION_METRICS:
        assert per[k] == pytest.approx(grey[k], rel=1e-9, abs=1e-9), k


def test_bad_inputs_raise_named_errors(scene):
    a, b, f = scene
    with pytest.raises(ValueError, match="b: size"):
        fusion_metrics(f, a, b[:-1])
    with pytest.raises(ValueError, match="fused"):
        fusion_metrics(np.zeros((4, 4, 4)), a, b)
    with pytest.raises(ValueError, match="unknown fusion metrics"):
        fusion_metrics(f, a, b, metrics=["nope"])
    assert set(fusion_metrics(f, a, b, metrics=["EN", "SSIM"])) == {"EN", "SSIM"}


# ---------------------------------------------------------------- metamorphic relations
def test_noise_lowers_similarity_and_raises_qcv(scene):
    a, b, f = scene
    noisy = f + np.random.default_rng(1).normal(0, 20, f.shape)
    clean, dirty = fusion_metrics(f, a, b), fusion_metrics(noisy, a, b)
    for k in ("SSIM", "Qabf", "VIF", "Qy", "CC", "PSNR"):
        assert dirty[k] < clean[k], k
    assert dirty["Qcv"] > clean["Qcv"]


def test_blur_lowers_sf_and_ag(scene):
    _, _, f = scene
    blurred = ndimage.gaussian_filter(f, 2.0)
    assert spatial_frequency(blurred) < spatial_frequency(f)
    assert average_gradient(blurred) < average_gradient(f)


def test_qcv_penalises_distortion_more_than_identity(scene):
    a, b, _ = scene
    assert qcv(a, a, b) < qcv(ndimage.gaussian_filter(a, 3), a, b)


# ---------------------------------------------------------------- independent references
def test_ssim_and_psnr_agree_with_scikit_image(scene):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b, f = scene
    ref = structural_similarity(a, f, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=255)  # 11 x 11 window, borders cropped = 'valid'
    assert ssim_pair(a, f) == pytest.approx(ref, abs=1e-10)
    assert ssim(f, a, b) == pytest.approx(ssim_pair(a, f) + ssim_pair(b, f))
    assert psnr_pair(a, f) == pytest.approx(peak_signal_noise_ratio(a, f, data_range=255), abs=1e-10)
    assert psnr(f, a, a) == pytest.approx(peak_signal_noise_ratio(a, f, data_range=255), abs=1e-10)


def test_filter2_semantics_match_scipy_correlate2d():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(23, 31))
    g = np.outer(*(2 * [signal.windows.gaussian(9, 1.8)]))
    g /= g.sum()
    assert np.allclose(gauss_filter2(x, 9, 1.8, "valid"), signal.correlate2d(x, g, mode="valid"), atol=1e-12)
    assert np.allclose(gauss_filter2(x, 9, 1.8, "same"), signal.correlate2d(x, g, mode="same"), atol=1e-12)
    k = rng.normal(size=(3, 3))
    assert np.allclose(filter2(k, x), signal.correlate2d(x, k, mode="same"))


def test_freqspace_grid():
    # MATLAB freqspace(4) = [-1 -0.5 0 0.5], freqspace(5) = [-0.8 -0.4 0 0.4 0.8]
    r = radial_frequency(5, 4, 1.0)
    assert np.allclose(r[2], np.abs([-1, -0.5, 0, 0.5]) * 4)
    assert np.allclose(r[:, 2], np.abs([-0.8, -0.4, 0, 0.4, 0.8]) * 5)


def _vifp_single_scale_naive(ref, dist, sigma_nsq=2.0):
    """Loop-free but 2-D (non-separable) transcription of one vifp scale, for cross-checking."""
    n = 17
    g = np.outer(*(2 * [signal.windows.gaussian(n, n / 5)]))
    g /= g.sum()
    f = lambda z: signal.correlate2d(z, g, mode="valid")  # noqa: E731
    mu1, mu2 = f(ref), f(dist)
    s1, s2, s12 = f(ref * ref) - mu1**2, f(dist * dist) - mu2**2, f(ref * dist) - mu1 * mu2
    s1, s2 = np.maximum(s1, 0), np.maximum(s2, 0)
    gg = s12 / (s1 + 1e-10)
    sv = s2 - gg * s12
    gg, sv = np.where(gg < 0, 0, gg), np.where(gg < 0, s2, sv)
    sv = np.maximum(sv, 1e-10)
    return np.log10(1 + gg**2 * s1 / (sv + sigma_nsq)).sum(), np.log10(1 + s1 / sigma_nsq).sum()


def test_vif_first_scale_matches_naive(scene):
    a, _, f = scene
    num, den = _vifp_single_scale_naive(a, f)
    assert vifp(a, f, scales=1) == pytest.approx(num / den, rel=1e-9)
    assert vif(f, a, a) == pytest.approx(2 * vifp(a, f))


# ---------------------------------------------------------------- pansharpening / HMIF
def test_reference_equal_to_fused_gives_ideal_values():
    rng = np.random.default_rng(3)
    for bands in (4, 8, 3):
        ref = rng.integers(1, 2048, size=(40, 72, bands)).astype(np.float64)
        m = pansharpening_metrics(ref, ref)
        assert m["SAM"] == pytest.approx(0.0, abs=1e-6)
        assert m["ERGAS"] == 0.0
        assert m["Q2n"] == pytest.approx(1.0, abs=1e-9)
        assert m["SCC"] == pytest.approx(1.0, abs=1e-12)
    h = hmif_metrics(ref / 2047, ref / 2047, 4)
    assert h["PSNR"] == math.inf and h["SSIM"] == pytest.approx(1.0) and h["SAM"] == pytest.approx(0.0, abs=1e-6)


def test_sam_and_ergas_closed_forms():
    ref = np.zeros((8, 8, 2))
    ref[..., 0] = 1.0
    fused = np.ones((8, 8, 2))
    assert sam(fused, ref) == pytest.approx(45.0)
    assert sam(3 * ref + 0, ref) == pytest.approx(0.0, abs=1e-6)
    ref = np.stack([np.full((8, 8), 100.0), np.full((8, 8), 50.0)], axis=2)
    fused = ref + np.array([10.0, 5.0])  # RMSE_b / mu_b = 0.1 in both bands
    assert ergas(fused, ref, ratio=4) == pytest.approx(100 / 4 * 0.1)


def test_q2n_degrades_with_noise_and_is_block_vectorised():
    rng = np.random.default_rng(4)
    ref = ndimage.gaussian_filter(rng.uniform(100, 1500, size=(64, 96, 4)), (2, 2, 0))
    q_clean = q2n(ref, ref)[0]
    q_noisy, qmap = q2n(ref, ref + rng.normal(0, 30, ref.shape))
    assert q_noisy < q_clean and qmap.shape == (2, 3)
    assert scc(ref + rng.normal(0, 30, ref.shape), ref) < 1.0


def test_onion_mult_is_complex_product_and_norm_multiplicative():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    z = onion_mult(x, y)
    prod = (x[:, 0] + 1j * x[:, 1]) * (y[:, 0] + 1j * y[:, 1])
    assert np.allclose(z[:, 0], prod.real) and np.allclose(z[:, 1], prod.imag)
    for n in (4, 8):  # quaternions and octonions are normed algebras: |xy| = |x||y|
        x, y = rng.normal(size=(6, n)), rng.normal(size=(6, n))
        assert np.allclose(np.linalg.norm(onion_mult(x, y), axis=1),
                           np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))


def test_uqi_blocks_closed_forms():
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 100, (64, 64))
    assert uqi_blocks(x, x) == pytest.approx(1.0)
    assert uqi_blocks(x, -x + 200) < 0  # anti-correlated blocks
    assert uqi_blocks(np.zeros((32, 32)), np.zeros((32, 32))) == 1.0


def test_full_resolution_metrics_consistent():
    from rwkvfusion_io.wald import upsample, wald_degrade

    rng = np.random.default_rng(7)
    ms = ndimage.gaussian_filter(rng.uniform(200, 1800, (32, 32, 4)), (1.5, 1.5, 0))
    pan = upsample(ms, 4).mean(axis=2)
    fused = upsample(ms, 4)
    m = pansharpening_metrics(fused, ms=ms, pan=pan, ratio=4, sensor="QB")
    assert 0 <= m["D_lambda"] < 0.2 and 0 <= m["D_s"] < 0.5
    assert m["HQNR"] == pytest.approx((1 - m["D_lambda"]) * (1 - m["D_s"]))
    both = pansharpening_metrics(fused, fused, ms=ms, pan=pan, sensor="QB")
    assert {"SAM", "ERGAS", "Q2n", "SCC", "D_lambda", "D_s", "HQNR"} == set(both)
    ms_lr, pan_lr = wald_degrade(ms, pan, 4, "QB")
    assert ms_lr.shape == (8, 8, 4) and pan_lr.shape == (32, 32)
    # normalised [0, 1] data are scaled by max_value into DN
    scaled = pansharpening_metrics(fused / 2047, ms=ms / 2047, pan=pan / 2047, sensor="QB", max_value=2047)
    assert scaled["D_lambda"] == pytest.approx(m["D_lambda"], abs=1e-9)
    with pytest.raises(ValueError, match="reference"):
        pansharpening_metrics(fused)


# ---------------------------------------------------------------- LPIPS (local weights only)
def test_lpips_skips_without_weights_and_runs_with_local_weights(tmp_path, scene):
    import torch

    from fusion.metrics import LPIPS_SKIP_MESSAGE, lpips_distance
    from fusion.metrics.lpips import _load

    a, b, f = scene
    assert "LPIPS" not in fusion_metrics(f, a, b, metrics=["EN"])
    assert "never downloaded" in LPIPS_SKIP_MESSAGE
    with pytest.raises(FileNotFoundError):
        lpips_distance(a, f, tmp_path / "missing.pth")
    torch.manual_seed(0)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    state = {}
    for i, s in shapes.items():
        state[f"features.{i}.weight"] = torch.randn(s) * 0.05
        state[f"features.{i}.bias"] = torch.zeros(s[0])
    path = tmp_path / "alex.pth"
    torch.save(state, path)
    _load.cache_clear()
    assert lpips_distance(a, a, path) == pytest.approx(0.0, abs=1e-9)
    m = fusion_metrics(f, a, b, metrics=["LPIPS"], lpips_weights=path)
    assert set(m) == {"LPIPS"} and 0 < m["LPIPS"] < 10


# ---------------------------------------------------------------- real data
def _average_pair(pa, pb):
    from fusion.metrics.cli import read_image

    a, b = read_image(pa).astype(np.float64), read_image(pb).astype(np.float64)
    a = rgb2gray(a) if a.ndim == 3 else a
    b = rgb2gray(b) if b.ndim == 3 else b
    return 0.5 * (a + b), a, b


@pytest.mark.realdata
def test_real_pairs_all_fusion_metrics_finite(shared_data):
    pairs = [
        (shared_data / "vif/tno/ir/01.png", shared_data / "vif/tno/vi/01.png"),
        (shared_data / "vif/roadscene/ir/FLIR_00211.jpg", shared_data / "vif/roadscene/vi/FLIR_00211.jpg"),
        (shared_data / "mif/mri_spect/MRI/11.png", shared_data / "mif/mri_spect/SPECT/11.png"),
        (shared_data / "mef/u2fusion/dataset1/ue/1.jpg", shared_data / "mef/u2fusion/dataset1/oe/1.jpg"),
        (shared_data / "mff/lytro/lytro-01-A.jpg", shared_data / "mff/lytro/lytro-01-B.jpg"),
    ]
    for pa, pb in pairs:
        f, a, b = _average_pair(pa, pb)
        m = fusion_metrics(f, a, b)
        bad = {k: v for k, v in m.items() if not np.isfinite(v)}
        assert not bad, f"{pa.name}: non-finite {bad}"
        assert 0.2 < m["Qabf"] < 0.975 and 1.0 < m["SSIM"] < 2.0


@pytest.mark.realdata
def test_real_pansharpening_and_hmif_metrics_finite(shared_data):
    import scipy.io

    from rwkvfusion_io.wald import upsample, wald_degrade

    d = scipy.io.loadmat(shared_data / "pan/imgWV2.mat")
    ms, pan = d["I_MS"][:64, :64].astype(np.float64), d["I_PAN"][:256, :256].astype(np.float64)
    ms_lr, pan_lr = wald_degrade(ms, pan, 4, str(d["sensor"][0]))
    rr = pansharpening_metrics(upsample(ms_lr, 4), ms, ratio=4, sensor="WV2", max_value=2047)
    fr = pansharpening_metrics(upsample(ms, 4), ms=ms, pan=pan, ratio=4, sensor="WV2")
    assert all(np.isfinite(v) for v in {**rr, **fr}.values()), (rr, fr)
    assert 0 < rr["Q2n"] < 1 and rr["SAM"] > 0 and 0 < fr["HQNR"] <= 1

    h = scipy.io.loadmat(shared_data / "hs/paris_data_hs_pan.mat")
    hs, pc = h["HSim"][:72, :57], h["PCim"][:216, :171]
    hs_lr, _ = wald_degrade(hs, pc, 3, None)
    hm = hmif_metrics(upsample(hs_lr, 3, "bicubic"), hs, 3)
    assert all(np.isfinite(v) for v in hm.values()) and hm["PSNR"] > 10


# ---------------------------------------------------------------- CLI
def _cli_app():
    import typer

    from fusion.metrics.cli import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test app"""

    register(app)
    return app


def test_cli_reports_missing_and_mismatched_files(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    rng = np.random.default_rng(8)
    for d in ("a", "b", "m1"):
        (tmp_path / d).mkdir()
    for name in ("x", "y", "z"):
        Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(tmp_path / "a" / f"{name}.png")
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "b" / f"{name}.jpg")
    Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(tmp_path / "m1" / "x.png")
    Image.fromarray(rng.integers(0, 256, (30, 48), dtype=np.uint8)).save(tmp_path / "m1" / "y.png")
    out = tmp_path / "res.csv"
    res = CliRunner().invoke(_cli_app(), ["metrics", "--task", "mef", "--a", str(tmp_path / "a"), "--b",
                                          str(tmp_path / "b"), "--fused", str(tmp_path / "m1"), "--out", str(out)],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "'z'" in res.output and "missing" in res.output
    assert "size mismatch" in res.output and "'y'" in res.output
    rows = list(csv.DictReader(out.open()))
    assert [r["image"] for r in rows] == ["x", "mean", "std"]
    assert float(rows[2]["SSIM"]) == 0.0 and float(rows[0]["EN"]) == pytest.approx(float(rows[1]["EN"]))


def test_cli_pan_arrays_single_files(tmp_path):
    from typer.testing import CliRunner

    rng = np.random.default_rng(9)
    ref = rng.integers(1, 2048, (64, 64, 4)).astype(np.float64)
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "fused.npy", ref + rng.normal(0, 20, ref.shape))
    out = tmp_path / "pan.csv"
    res = CliRunner().invoke(_cli_app(), ["metrics", "--task", "pan", "--ref", str(tmp_path / "ref.npy"),
                                          "--fused", str(tmp_path / "fused.npy"), "--out", str(out)],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    row = next(csv.DictReader(out.open()))
    assert 0 < float(row["Q2n"]) < 1 and float(row["SAM"]) > 0


@pytest.mark.realdata
def test_cli_on_real_tno_pairs(shared_data, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    tno = shared_data / "vif/tno"
    names = sorted(p.name for p in (tno / "ir").iterdir())[:3]
    (tmp_path / "average").mkdir()
    for n in names:
        f, _, _ = _average_pair(tno / "ir" / n, tno / "vi" / n)
        Image.fromarray(np.round(f).astype(np.uint8)).save(tmp_path / "average" / n)
    out = tmp_path / "tno.csv"
    res = CliRunner().invoke(_cli_app(), ["metrics", "--task", "vif", "--a", str(tno / "ir"), "--b", str(tno / "vi"),
                                          "--fused", str(tmp_path / "average"), "--out", str(out), "--metric", "EN",
                                          "--metric", "Qabf", "--metric", "SSIM"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "Qabf" in res.output and "average (n=3)" in res.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and all(np.isfinite(float(r["Qabf"])) for r in rows)


@pytest.mark.realdata
def test_cli_pan_full_resolution_from_mat(shared_data, tmp_path):
    from typer.testing import CliRunner

    from fusion.metrics.cli import read_array
    from rwkvfusion_io.wald import upsample

    mat = shared_data / "pan/WV3_example.mat"
    ms = read_array(mat, "ms")
    assert ms.shape == (32, 32, 8) and read_array(mat, "pan").shape == (128, 128)
    np.save(tmp_path / "WV3_example.npy", upsample(ms.astype(np.float64), 4))
    out = tmp_path / "fr.csv"
    res = CliRunner().invoke(_cli_app(), ["metrics", "--task", "pan", "--a", str(mat), "--b", str(mat), "--fused",
                                          str(tmp_path / "WV3_example.npy"), "--sensor", "WV3", "--out", str(out)],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "HQNR" in res.output
    row = next(csv.DictReader(out.open()))
    assert 0 < float(row["HQNR"]) <= 1 and np.isfinite(float(row["D_s"]))


def test_index_files_suffix_matching(tmp_path):
    from fusion.metrics.cli import IMAGE_EXTS, index_files

    for n in ("lytro-01-A.jpg", "lytro-01-B.jpg", "lytro-02-A.jpg", "notes.txt"):
        (tmp_path / n).write_bytes(b"")
    assert set(index_files(tmp_path, IMAGE_EXTS, "-A")) == {"lytro-01", "lytro-02"}
    assert index_files(tmp_path, IMAGE_EXTS, "-B") == {"lytro-01": tmp_path / "lytro-01-B.jpg"}
    assert set(index_files(tmp_path, IMAGE_EXTS)) == {"lytro-01-A", "lytro-01-B", "lytro-02-A"}


def test_qy_flat_windows_reduce_to_the_luminance_term():
    """Flat A and F: their variances are exactly 0 (no cancellation noise), so S_AF is the luminance term.

    B is textured, so S_AB ~ 0 < 0.75 and lambda = 0 (no NaN): Qy = max(S_AF, S_BF) = lum(A, F).
    """
    from fusion.metrics.structural import qy

    va, vf = 251.37, 129.73
    a, f = np.full((40, 40), va), np.full((40, 40), vf)
    b = np.random.default_rng(0).uniform(0, 255, (40, 40))
    assert qy(f, a, b) == pytest.approx(2 * va * vf / (va * va + vf * vf), rel=1e-9)


def test_qy_stays_in_range_on_saturated_images():
    from fusion.metrics.structural import qy

    rng = np.random.default_rng(3)
    for _ in range(5):
        a = np.full((64, 64), 255.0)
        a[:, :20] = rng.uniform(0, 255, (64, 20))
        b = np.full((64, 64), 254.6)
        b[:, 44:] = rng.uniform(0, 255, (64, 20))
        f = np.clip((a + b) / 2 + rng.normal(0, 1e-3, a.shape), 0, 255)
        assert -1.0 <= qy(f, a, b) <= 1.0


def test_cli_method_names_tell_fused_folders_apart(tmp_path):
    from fusion.metrics.cli import _method_names

    dirs = [tmp_path / "ours" / "set1", tmp_path / "gff" / "set1", tmp_path / "gff" / "set2"]
    for d in dirs:
        d.mkdir(parents=True)
    (tmp_path / "one.png").write_bytes(b"")
    assert _method_names(dirs) == ["ours/set1", "gff/set1", "set2"]
    assert _method_names([dirs[0], dirs[0]]) == ["set1", "set1#2"]
    assert _method_names([tmp_path / "one.png"]) == ["one"]
