"""Toolbox metrics (VIFB, MEFB, Vivone's pansharpening toolbox): hand-worked small arrays, closed forms,
bounds/symmetry, naive per-window re-implementations, the ``--suite`` command and the image reader."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, signal

from fusion.metrics import (
    SUITES,
    cross_entropy,
    cut_bounds,
    d_lambda_toolbox,
    edge_intensity,
    fmi,
    hqnr_toolbox,
    mef_ssim,
    mefb_suite,
    nmi,
    phase_congruency,
    psnr_vifb,
    q_index,
    qc,
    qncie,
    qw,
    rmse_vifb,
    spatial_frequency,
    tsallis_entropy,
    vifb_suite,
    viff,
)
from fusion.metrics.fmi import sobel_edges
from fusion.metrics.mef_ssim import mef_ssim_single_scale
from fusion.metrics.mtf import gen_mtf_kernel, imresize_bicubic
from fusion.metrics.statistics import spatial_frequency_vifb_color


@pytest.fixture(scope="module")
def scene():
    """Two natural 96 x 112 sources (camera, astronaut grey) and their rounded average, float 0..255."""
    from skimage import color, data

    a = data.camera()[120:216, 160:272].astype(np.float64)
    b = np.round(color.rgb2gray(data.astronaut())[40:136, 200:312] * 255)
    return a, b, np.round(0.5 * (a + b))


def _xor_triple(n: int = 16):
    """Pairwise independent binary images (A, B, F = A xor B), each level on half of the pixels."""
    a = np.tile(np.array([[0, 0], [255, 255]], dtype=np.float64), (n, n))
    b = np.tile(np.array([[0, 255], [0, 255]], dtype=np.float64), (n, n))
    f = np.tile(np.array([[0, 255], [255, 0]], dtype=np.float64), (n, n))
    return a, b, f


# ---------------------------------------------------------------- statistics
def test_sf_divides_both_sums_by_mn_worked_by_hand():
    f = np.array([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    # horizontal differences 1, 2, 0, 0 -> 5; vertical 2, 1, -1 -> 6; both over M N = 6
    assert spatial_frequency(f) == pytest.approx(math.sqrt(5 / 6 + 6 / 6), rel=1e-15)


def test_sf_of_colour_image_takes_matlabs_side_by_side_view():
    h, w = 5, 4
    f = np.stack([np.full((h, w), c) for c in (10.0, 13.0, 9.0)], axis=2)
    # [R G B] side by side: only the two seams differ, (13-10)^2 + (9-13)^2 per row, over H * 3W pixels
    assert spatial_frequency_vifb_color(f) == pytest.approx(math.sqrt(h * (9 + 16) / (h * 3 * w)), rel=1e-15)


def test_psnr_and_rmse_vifb_closed_forms(scene):
    _, _, f = scene
    mn = f.size
    a = f + 2.0  # sqrt(SSE) = 2 sqrt(MN) -> the toolbox helper gives 2 / sqrt(MN); B = F gives 0
    assert rmse_vifb(f, a, f) == pytest.approx(1.0 / math.sqrt(mn), rel=1e-14)
    assert psnr_vifb(f, a, f) == pytest.approx(20 * math.log10(255 / math.sqrt(1 / math.sqrt(mn))), rel=1e-14)
    assert psnr_vifb(f, f, f) == math.inf and rmse_vifb(f, f, f) == 0.0


def test_edge_intensity_of_a_ramp():
    h, w, s = 9, 12, 3.0
    f = np.tile(s * np.arange(w), (h, 1))
    # Sobel (transposed) gives 8 s inside, 4 s on the two replicated border columns; the other Sobel 0
    assert edge_intensity(f) == pytest.approx((8 * s * (w - 2) + 2 * 4 * s) / w, rel=1e-14)
    assert edge_intensity(np.full((8, 8), 7.0)) == 0.0


# ---------------------------------------------------------------- information
def test_cross_entropy_worked_by_hand():
    a = np.array([[0.0, 0.0], [1.0, 1.0]])
    f = np.array([[0.0, 0.0], [0.0, 1.0]])
    # p_A = (1/2, 1/2), p_F = (3/4, 1/4): D(A||F) = 1/2 log2(2/3) + 1/2 log2(2); D(F||F) = 0
    expected = 0.5 * (0.5 * math.log2(2 / 3) + 0.5 * 1.0)
    assert cross_entropy(f, a, f) == pytest.approx(expected, rel=1e-14)
    # a level of A missing in F is skipped (the toolbox's guard), not infinite
    assert math.isfinite(cross_entropy(np.zeros((2, 2)), a, a))


def test_nmi_qncie_on_identical_and_on_pairwise_independent_images():
    a, b, f = _xor_triple()
    assert nmi(f, a, b) == pytest.approx(0.0, abs=1e-12)
    # R = identity: eigenvalues 1, 1, 1 -> H_R = -3 (1/3) log_256(1/3) = log2(3) / 8
    assert qncie(f, a, b) == pytest.approx(1 - math.log2(3) / 8, rel=1e-12)
    u = np.tile(np.arange(256, dtype=np.float64).reshape(16, 16), (2, 2))  # every level equally often
    assert nmi(u, u, u) == pytest.approx(2.0, rel=1e-12)
    assert qncie(u, u, u) == pytest.approx(1.0, abs=1e-12)  # all NCC = H/8 = 1


def test_qncie_bounds_and_source_symmetry(scene):
    a, b, f = scene
    q = qncie(f, a, b)
    assert 0 <= q <= 1
    assert qncie(f, b, a) == pytest.approx(q, rel=1e-12)
    assert nmi(f, b, a) == pytest.approx(nmi(f, a, b), rel=1e-12)


def test_tsallis_entropy_worked_by_hand_including_the_toolbox_pairing():
    q = 1.85
    x = np.array([[0.0, 0.0], [0.0, 255.0]])
    f = np.array([[0.0, 0.0], [255.0, 255.0]])
    # P(X=0,F=0) = 1/2, P(0,255) = 1/4, P(255,255) = 1/4; p_X = (3/4, 1/4), p_F = (1/2, 1/2).
    # The toolbox pairs P(i, j) with p_F(i) p_X(j):
    s = (0.5**q / (0.5 * 0.75) ** (q - 1) + 0.25**q / (0.5 * 0.25) ** (q - 1)
         + 0.25**q / (0.5 * 0.25) ** (q - 1))
    i_xf = (1 - s) / (1 - q)
    assert tsallis_entropy(f, x, f) == pytest.approx(i_xf + (1 - 2 * 0.5 ** (2 - q)) / (1 - q), rel=1e-13)


# ---------------------------------------------------------------- structural
def _g7(z):
    g = np.outer(*(2 * [signal.windows.gaussian(7, 1.5)]))
    return signal.correlate2d(z, g / g.sum(), mode="valid")


def _ssim7(x, y, c=2e-16):
    mx, my = _g7(x), _g7(y)
    sx, sy, sxy = _g7(x * x) - mx**2, _g7(y * y) - my**2, _g7(x * y) - mx * my
    return ((2 * mx * my + c) * (2 * sxy + c)) / ((mx**2 + my**2 + c) * (sx + sy + c))


def test_qc_ceiling_swap_rule_and_constant_source(scene):
    a, b, f = scene
    assert qc(a, a, a) == pytest.approx(1.0, abs=1e-9)
    # swapping A and B maps mu to 1 - mu: equal where 0 <= mu <= 1, but the clip turns the pixels with
    # mu < 0 (Q = 0) into mu' > 1 (Q = 1) and back, so the difference is (#(mu > 1) - #(mu < 0)) / N
    s_af = _g7(a * f) - _g7(a) * _g7(f)
    s_bf = _g7(b * f) - _g7(b) * _g7(f)
    mu = s_af / (s_af + s_bf)
    assert qc(f, a, b) - qc(f, b, a) == pytest.approx(((mu > 1).sum() - (mu < 0).sum()) / mu.size, abs=1e-9)
    # a constant source has zero covariance with F: mu = 1 exactly and Qc is the mean SSIM(A, F) map
    const = np.full_like(a, 90.0)
    assert qc(f, a, const) == pytest.approx(float(_ssim7(a, f).mean()), rel=1e-9)


def test_qw_ceiling_and_symmetry(scene):
    a, b, f = scene
    assert qw(a, a, a) == pytest.approx(1.0, abs=1e-12)
    assert qw(f, b, a) == pytest.approx(qw(f, a, b), rel=1e-12)
    assert -1 <= qw(f, a, b) <= 1


def test_viff_ceiling_and_noise(scene):
    a, b, f = scene
    assert viff(a, a, a) == pytest.approx(1.0, abs=1e-8)
    noisy = f + np.random.default_rng(0).normal(0, 20, f.shape)
    assert viff(noisy, a, b) < viff(f, a, b)


# ---------------------------------------------------------------- MEF-SSIM
def _mef_ssim_naive(seq, f, k=0.03):
    """The paper's per-window algorithm written out literally (loops), 11 x 11 windows, one scale."""
    g = np.outer(*(2 * [signal.windows.gaussian(11, 1.5)]))
    g /= g.sum()
    eps = np.finfo(float).eps
    c = (k * 255) ** 2
    h, w = f.shape
    q = []
    for i in range(h - 10):
        for j in range(w - 10):
            blocks = [s[i : i + 11, j : j + 11] for s in seq]
            mus = [bl.mean() for bl in blocks]
            eds = [np.linalg.norm(bl - m) + 0.001 for bl, m in zip(blocks, mus)]
            tot = sum(blocks)
            r = (np.linalg.norm(tot - tot.mean()) + eps) / (sum(np.linalg.norm(bl - m) for bl, m in
                                                                 zip(blocks, mus)) + eps)
            r = min(max(r, eps), 1 - eps) if r > 1 or r < 0 else r
            p = min(math.tan(math.pi / 2 * r), 10)
            wts = np.array([(e / 11) ** p + eps for e in eds])
            wts /= wts.sum()
            rb = sum(wk * (bl - m) / e for wk, bl, m, e in zip(wts, blocks, mus, eds))
            if np.linalg.norm(rb) > 0:
                rb = rb / np.linalg.norm(rb) * max(eds)
            fb = f[i : i + 11, j : j + 11]
            m1, m2 = (g * rb).sum(), (g * fb).sum()
            s1, s2 = (g * (rb - m1) ** 2).sum(), (g * (fb - m2) ** 2).sum()
            s12 = (g * (rb - m1) * (fb - m2)).sum()
            q.append((2 * s12 + c) / (s1 + s2 + c))
    return float(np.mean(q))


def test_mef_ssim_single_scale_equals_the_literal_window_loop(scene):
    a, b, f = (x[:30, :34] for x in scene)
    b = b.copy()
    b[:14, :14] = 255.0  # a saturated (flat) patch, the case MEF data are full of
    assert mef_ssim_single_scale([a, b], f) == pytest.approx(_mef_ssim_naive([a, b], f), rel=1e-9)


def test_mef_ssim_ceiling_and_bounds(scene):
    a, b, f = scene
    assert mef_ssim(a, a, a) == pytest.approx(1.0, abs=1e-9)
    assert 0 < mef_ssim(f, a, b) <= 1
    with pytest.raises(ValueError, match="two source"):
        mef_ssim(f, a)


# ---------------------------------------------------------------- FMI and phase congruency
def test_sobel_edges_thin_a_step_to_one_column():
    x = np.zeros((12, 12))
    x[:, 6:] = 100.0
    e = sobel_edges(x)
    # |bx| is 50 on columns 5 and 6 (a tie); MATLAB keeps c where b(c-1) <= b(c) > b(c+1): column 6
    assert e.sum() == 12 and e[:, 6].all()


def test_fmi_ceiling_and_identical_source(scene):
    a, b, f = scene
    assert fmi(a, a, a) == pytest.approx(1.0)
    v = fmi(f, f, b)  # the A pass is 1 in every window
    assert 0.5 <= v <= 1
    assert 0 <= fmi(f, a, b) <= 1


def test_phase_congruency_constant_is_zero_and_step_peaks_at_the_edge():
    assert np.all(phase_congruency(np.full((32, 40), 50.0)).pc == 0)
    x = np.zeros((64, 64))
    x[:, 32:] = 200.0
    pc = phase_congruency(x + np.random.default_rng(1).normal(0, 0.5, x.shape)).pc
    assert 0 <= pc.min() and pc.max() <= 1
    profile = pc[16:48].mean(axis=0)
    assert abs(int(np.argmax(profile[8:56])) + 8 - 31.5) <= 1.5


# ---------------------------------------------------------------- pansharpening toolbox
def test_gen_mtf_kernel_response_and_dc_gain():
    h = gen_mtf_kernel(0.23, 4)
    assert h.shape == (41, 41) and np.allclose(h, h.T) and np.allclose(h, h[::-1, ::-1])
    n = np.arange(41) - 20
    resp = float((h * np.cos(2 * np.pi * 0.125 * n)[None, :]).sum())  # DTFT at (1/8, 0) cycles/pixel
    assert h.sum() == pytest.approx(0.9985, abs=5e-5)
    assert resp == pytest.approx(0.214, abs=5e-4)


def test_imresize_bicubic_keeps_constants_and_interior_of_ramps():
    assert np.allclose(imresize_bicubic(np.full((16, 20), 3.5), 0.25), 3.5)
    x = np.tile(np.arange(64, dtype=np.float64), (8, 1))
    out = imresize_bicubic(x, 0.25)
    assert out.shape == (2, 16)
    j = np.arange(16)
    # output column j samples input coordinate (j + 1) 4 - 1.5 (1-based) = 4 j + 1.5 (0-based)
    assert np.allclose(out[:, 3:-3], (4 * j + 1.5)[3:-3], atol=1e-12)


def test_q_index_closed_forms():
    rng = np.random.default_rng(3)
    x = rng.uniform(100, 200, (40, 48, 2))
    assert q_index(x, x) == pytest.approx(1.0)
    c = 30.0  # y = x + c: covariance = variance, so every window gives 2 mx my / (mx^2 + my^2)
    y = x + c
    expected = []
    for bnd in range(2):
        mx = np.lib.stride_tricks.sliding_window_view(x[:, :, bnd], (32, 32)).mean(axis=(2, 3))
        my = mx + c
        expected.append((2 * mx * my / (mx**2 + my**2)).mean())
    assert q_index(x, y) == pytest.approx(float(np.mean(expected)), rel=1e-10)


def test_cut_bounds_is_the_toolbox_asymmetric_cut():
    x = np.arange(100 * 90).reshape(100, 90)
    c = cut_bounds(x, 21)
    assert c.shape == (100 - 41, 90 - 41) and c[0, 0] == x[20, 20] and c[-1, -1] == x[-22, -22]


def test_toolbox_full_resolution_indexes():
    from rwkvfusion_io.wald import interp23tap

    rng = np.random.default_rng(5)
    ms = ndimage.gaussian_filter(rng.uniform(200, 1800, (16, 16, 4)), (1.0, 1.0, 0))
    pan = interp23tap(ms, 4).mean(axis=2) + rng.normal(0, 5, (64, 64))
    fused = interp23tap(ms, 4)
    hq, dl, ds = hqnr_toolbox(fused, ms, pan, 4, "QB")
    assert hq == pytest.approx((1 - dl) * (1 - ds)) and 0 <= dl < 0.2 and 0 <= ds < 1
    noisy = fused + rng.normal(0, 80, fused.shape)
    assert d_lambda_toolbox(noisy, fused, 4, "QB") > d_lambda_toolbox(fused, fused, 4, "QB")


# ---------------------------------------------------------------- suites
def test_suites_keep_the_toolbox_order(scene):
    a, b, f = scene
    assert list(vifb_suite(f, a, b)) == list(SUITES["vifb"])
    assert SUITES["vifb"][:4] == ("AG", "CE", "EI", "EN") and SUITES["mefb"][-1] == "VIF"
    assert SUITES["pan"] == ("Q2n", "Q", "SAM", "ERGAS", "SCC", "D_lambda", "D_s", "HQNR")


def test_vifb_colour_protocol(scene):
    a, b, f = scene
    rep = lambda x: np.repeat(x[..., None], 3, axis=2)  # noqa: E731
    grey = vifb_suite(f, a, b)
    colour = vifb_suite(rep(f), rep(a), b)
    for k in grey:
        if k != "SF":
            assert colour[k] == pytest.approx(grey[k], rel=1e-12), k
    assert colour["SF"] == pytest.approx(spatial_frequency_vifb_color(rep(f)), rel=1e-15)
    assert colour["SF"] != pytest.approx(grey["SF"], rel=1e-6)  # the side-by-side seams


def test_mefb_colour_fused_with_grey_sources_uses_the_first_channel(scene):
    a, b, f = scene
    fc = np.stack([f, np.zeros_like(f), np.full_like(f, 255.0)], axis=2)
    names = ["CE", "NMI", "SF", "Qw"]
    assert mefb_suite(fc, a, b, names) == pytest.approx(mefb_suite(f, a, b, names), rel=1e-12)
    from fusion.metrics import rgb2gray

    assert mefb_suite(fc, a, b, ["MEF_SSIM"])["MEF_SSIM"] == pytest.approx(mef_ssim(rgb2gray(fc), a, b), rel=1e-12)


def test_suites_reject_out_of_range_and_unknown(scene):
    a, b, f = scene
    with pytest.raises(ValueError, match="outside 0..255"):
        vifb_suite(f / 255.0 * 300.0, a, b)
    with pytest.raises(ValueError, match="unknown vifb"):
        vifb_suite(f, a, b, ["Qp"])


def test_new_metrics_are_selectable_by_name(scene):
    from fusion.metrics import DEFAULT_FUSION_METRICS, FUSION_METRICS, fusion_metrics

    a, b, f = scene
    out = fusion_metrics(f, a, b, metrics=["CE", "Qc", "PSNR_vifb"])
    assert list(out) == ["CE", "Qc", "PSNR_vifb"] and out["CE"] == cross_entropy(f, a, b)
    assert set(DEFAULT_FUSION_METRICS) < set(FUSION_METRICS) and "FMI" not in DEFAULT_FUSION_METRICS


# ---------------------------------------------------------------- image reading and the command
def test_read_fusion_image_bit_depths(tmp_path):
    import tifffile
    from PIL import Image

    from fusion.metrics.imageio import read_fusion_image

    x16 = (np.arange(24 * 20, dtype=np.uint16).reshape(24, 20) * 100)
    Image.fromarray(x16).save(tmp_path / "a16.png")
    with pytest.raises(ValueError, match="bit-depth 8"):
        read_fusion_image(tmp_path / "a16.png")
    got = read_fusion_image(tmp_path / "a16.png", "16")
    assert got.max() == pytest.approx(x16.max() / 65535 * 255)
    with pytest.raises(ValueError, match="outside the declared range"):
        read_fusion_image(tmp_path / "a16.png", "16", (0, 1000))
    import cv2

    rgb16 = np.stack([x16, x16 // 2, x16 // 3], axis=2)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[:, :, ::-1])  # a 16-bit colour PNG (Pillow would cut it to 8)
    with pytest.raises(ValueError, match="bit-depth 8"):
        read_fusion_image(tmp_path / "c16.png")
    assert np.allclose(read_fusion_image(tmp_path / "c16.png", "16"), rgb16 / 65535 * 255)
    tifffile.imwrite(tmp_path / "f.tif", np.linspace(0, 1, 24 * 20, dtype=np.float32).reshape(24, 20))
    with pytest.raises(ValueError, match="explicit --range"):
        read_fusion_image(tmp_path / "f.tif", "float")
    assert read_fusion_image(tmp_path / "f.tif", "float", (0, 1)).max() == pytest.approx(255.0)


def test_cli_suite_vifb_table_and_pan(tmp_path, scene):
    import typer
    from PIL import Image
    from typer.testing import CliRunner

    from fusion.metrics.cli import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test app"""

    register(app)
    a, b, f = scene
    for name, x in (("a", a), ("b", b), ("f", f)):
        (tmp_path / name).mkdir()
        Image.fromarray(x.astype(np.uint8)).save(tmp_path / name / "s.png")
    out = tmp_path / "m.csv"
    res = CliRunner().invoke(app, ["metrics", "--suite", "vifb", "--a", str(tmp_path / "a"), "--b",
                                   str(tmp_path / "b"), "--fused", str(tmp_path / "f"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    header = out.read_text().splitlines()[0].split(",")
    assert header[2:] == list(SUITES["vifb"])
    rng = np.random.default_rng(0)
    gt = ndimage.gaussian_filter(rng.uniform(100, 1500, (64, 64, 4)), (2, 2, 0))
    np.save(tmp_path / "gt.npy", gt)
    np.save(tmp_path / "fu.npy", gt + rng.normal(0, 10, gt.shape))
    res = CliRunner().invoke(app, ["metrics", "--suite", "pan", "--ref", str(tmp_path / "gt.npy"), "--fused",
                                   str(tmp_path / "fu.npy"), "--cut", "5"])
    assert res.exit_code == 0, res.output
    assert "Q2n" in res.output and "ERGAS" in res.output
    np.save(tmp_path / "fn.npy", gt / 4000)
    np.save(tmp_path / "gn.npy", gt / 4000)
    res = CliRunner().invoke(app, ["metrics", "--suite", "pan", "--ref", str(tmp_path / "gn.npy"), "--fused",
                                   str(tmp_path / "fn.npy")])
    assert "normalised" in res.output
