"""Known-answer tests for the classical baselines (fusion.baselines)."""
from __future__ import annotations

import numpy as np
import pytest

from fusion.baselines import METHODS, get_method, methods_for
from fusion.baselines.gff import guided_filter
from fusion.baselines.laplacian import laplacian_pyramid, laplacian_pyramid_fusion, reconstruct
from rwkvfusion_io.wald import interp23tap

RNG = np.random.default_rng(0)
FUSION = [n for n, s in METHODS.items() if s.kind == "fusion"]
PAN = [n for n, s in METHODS.items() if s.kind == "pan"]


def _smooth(h: int, w: int, c: int | None = None) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = 0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y) + 0.05 * RNG.standard_normal((h, w))
    img = np.clip(img, 0, 1)
    return img if c is None else np.stack([img * (0.8 + 0.1 * k) for k in range(c)], axis=-1)


def test_registry_and_get_method():
    assert {"average", "choose-max", "laplacian", "gff", "mertens"} <= set(FUSION)
    assert {"exp", "brovey", "gs", "mtf-glp-hpm"} <= set(PAN)
    assert get_method("MTF_GLP_HPM") is METHODS["mtf-glp-hpm"]
    assert [s.name for s in methods_for("mef")][-1] == "mertens"
    assert all(s.citation and s.fn.__doc__ for s in METHODS.values())
    with pytest.raises(ValueError, match="valid names: .*average"):
        get_method("nope")


@pytest.mark.parametrize("name", FUSION)
@pytest.mark.parametrize("colour", [False, True])
def test_fusion_identical_inputs_return_the_input(name, colour):
    img = _smooth(48, 64, 3 if colour else None)
    out = get_method(name).fn(img, img.copy())
    assert out.shape == img.shape
    np.testing.assert_allclose(out, img, atol=2e-6 if name == "mertens" else 1e-9)


def test_average_and_choose_max_closed_form():
    a, b = RNG.random((8, 9)), RNG.random((8, 9))
    np.testing.assert_array_equal(get_method("average").fn(a, b), (a + b) / 2)
    np.testing.assert_array_equal(get_method("choose-max").fn(a, b), np.maximum(a, b))


def test_fusion_bad_input_names_argument():
    with pytest.raises(ValueError, match="same shape"):
        get_method("gff").fn(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match="b: "):
        get_method("average").fn(np.zeros((8, 8)), np.zeros(8))


def test_laplacian_pyramid_reconstructs_exactly():
    img = RNG.random((37, 51))
    pyr = laplacian_pyramid(img, 3)
    assert [p.shape for p in pyr] == [(37, 51), (19, 26), (10, 13), (5, 7)]
    np.testing.assert_allclose(reconstruct(pyr), img, atol=1e-12)


def test_laplacian_fusion_picks_the_detailed_source():
    # a flat source has zero detail coefficients: the fused pyramid is the textured one's details
    # over the mean of the two bases (closed form)
    tex = _smooth(64, 64)
    flat = np.full_like(tex, 0.3)
    pt, pf = laplacian_pyramid(tex, 3), laplacian_pyramid(flat, 3)
    assert max(np.abs(lap).max() for lap in pf[:-1]) < 1e-12
    expected = reconstruct(pt[:-1] + [0.5 * (pt[-1] + pf[-1])])
    np.testing.assert_allclose(laplacian_pyramid_fusion(flat, tex, levels=3), expected, atol=1e-12)


def test_guided_filter_constant_and_self_guided():
    guide = RNG.random((40, 40))
    np.testing.assert_allclose(guided_filter(guide, np.full_like(guide, 0.7), 5, 0.3), 0.7, atol=1e-12)
    # guide == input with eps -> 0 is the identity (a = 1, b = 0 everywhere)
    np.testing.assert_allclose(guided_filter(guide, guide, 3, 1e-12), guide, atol=1e-6)


def test_gff_keeps_the_salient_source():
    tex = _smooth(96, 96)
    flat = np.full_like(tex, 0.5)
    out = get_method("gff").fn(tex, flat)
    # the textured source wins the detail layer; the base is a weighted mean of the bases
    assert np.corrcoef(out.ravel(), tex.ravel())[0, 1] > 0.95


def test_mertens_prefers_well_exposed_pixels():
    mid = _smooth(64, 64) * 0.4 + 0.3
    dark = np.full_like(mid, 0.02)
    out = get_method("mertens").fn(dark, mid)
    assert np.abs(out - mid).mean() < np.abs(out - dark).mean()


def test_exp_of_a_constant_is_constant():
    const = np.full((8, 10, 3), 123.0)
    np.testing.assert_allclose(METHODS["exp"].fn(const, np.zeros((32, 40)), 4), 123.0, rtol=1e-8)


def _pan_case(ratio: int = 4, bands: int = 4):
    ms = 200.0 + 100.0 * RNG.random((16, 16, bands))
    lms = METHODS["exp"].fn(ms, np.zeros((16 * ratio, 16 * ratio)), ratio)
    return ms, lms


def test_exp_is_interp23tap():
    ms, lms = _pan_case()
    np.testing.assert_allclose(lms, interp23tap(ms, 4))
    assert lms.shape == (64, 64, 4)


def test_brovey_known_values():
    ms, lms = _pan_case()
    intensity = lms.mean(axis=2)
    # PAN equal to the intensity: histogram matching is the identity and Brovey returns the EXP image
    np.testing.assert_allclose(METHODS["brovey"].fn(ms, intensity, 4), lms, rtol=1e-10)
    # constant PAN: matched PAN is mean(I), so F_k = lms_k * mean(I) / I
    out = METHODS["brovey"].fn(ms, np.full(intensity.shape, 7.0), 4)
    np.testing.assert_allclose(out, lms * (intensity.mean() / intensity)[..., None], rtol=1e-10)


def test_gram_schmidt_pan_equal_intensity_returns_upsampled_ms():
    ms, lms = _pan_case(bands=8)
    np.testing.assert_allclose(METHODS["gs"].fn(ms, lms.mean(axis=2), 4), lms, rtol=1e-10)
    # a PAN with extra detail injects it with the covariance gains (the output differs from lms)
    pan = lms.mean(axis=2) + 5.0 * RNG.standard_normal(lms.shape[:2])
    assert np.abs(METHODS["gs"].fn(ms, pan, 4) - lms).mean() > 1.0


def test_mtf_glp_hpm_constant_pan_returns_upsampled_ms():
    ms, lms = _pan_case()
    out = METHODS["mtf-glp-hpm"].fn(ms, np.full(lms.shape[:2], 3.0), 4)
    np.testing.assert_allclose(out, lms, rtol=1e-6)


def test_mtf_glp_hpm_injects_pan_detail():
    ms, lms = _pan_case(bands=8)
    pan = lms.mean(axis=2) * (1.0 + 0.2 * RNG.standard_normal(lms.shape[:2]))
    out = METHODS["mtf-glp-hpm"].fn(ms, pan, 4, sensor="WV3")
    # high-pass modulation: the fused band correlates with the PAN's fine detail, EXP does not
    hp = pan - lms.mean(axis=2)
    assert np.corrcoef((out - lms)[..., 0].ravel(), hp.ravel())[0, 1] > 0.5


@pytest.mark.parametrize("name", PAN)
def test_pan_bad_shapes(name):
    with pytest.raises(ValueError, match="ratio=4"):
        METHODS[name].fn(np.ones((16, 16, 4)), np.ones((60, 64)), 4)
