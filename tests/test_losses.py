"""Fusion loss (Eq. 20) and pansharpening loss (Eq. 19): closed forms, library agreement, gradients."""
from __future__ import annotations

import math

import pytest
import torch

from fusion.config import LossConfig
from fusion.losses import FusionLoss, PanLoss, build_loss, sobel_abs, ssim_map, ssim_maps


def _const(v, shape=(2, 1, 16, 16), dtype=torch.float32):
    return torch.full(shape, v, dtype=dtype)


def _ssim_const(x, y, data_range=1.0):
    # SSIM of two flat images: luminance term only (variances and covariance vanish, C2/C2 = 1)
    c1 = (0.01 * data_range) ** 2
    return (2 * x * y + c1) / (x * x + y * y + c1)


def test_ssim_map_matches_kornia_and_identity():
    import kornia

    torch.manual_seed(0)
    x = torch.rand(2, 3, 24, 30)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert torch.allclose(ssim_map(x, y, 5, 1.5), kornia.metrics.ssim(x, y, 5, eps=0.0), atol=1e-6)
    assert torch.allclose(ssim_map(x, y, 11, 1.5), kornia.metrics.ssim(x, y, 11, eps=0.0), atol=1e-6)
    assert torch.allclose(ssim_map(x, x), torch.ones_like(x), atol=1e-5)
    z = (x - 0.1 * torch.randn_like(x)).clamp(0, 1)     # several references in one call (the loss's A and B)
    for got, ref in zip(ssim_maps(x, (y, z), 5, 1.5), (y, z)):
        assert torch.allclose(got, kornia.metrics.ssim(x, ref, 5, eps=0.0), atol=1e-6)


def test_sobel_abs_of_ramp():
    ramp = torch.arange(8.0).repeat(8, 1)[None, None]  # slope 1 along x
    s = sobel_abs(ramp)
    assert torch.allclose(s[..., 2:-2, 2:-2], torch.full_like(s[..., 2:-2, 2:-2], 8.0))  # |[-1 0 1]x[1 2 1]| = 8


def test_fusion_loss_zero_when_all_equal():
    torch.manual_seed(1)
    x = torch.rand(2, 1, 16, 16)
    total, parts = FusionLoss()(x, x, x)
    assert float(total) == pytest.approx(0.0, abs=1e-5)
    assert set(parts) == {"intensity", "ssim", "gradient", "total"}


def test_fusion_loss_closed_form_on_flat_images():
    d = torch.float64  # float32 round-off in the Sobel of flat images would shift wA by ~1e-3
    out, a, b = _const(0.5, dtype=d), _const(0.2, dtype=d), _const(0.9, dtype=d)
    total, parts = FusionLoss(eta=(10, 2, 20))(out, a, b, gt=_const(0.4, dtype=d))
    assert parts["intensity"] == pytest.approx(10 * (0.3 + 0.4), rel=1e-5)
    assert parts["gradient"] == pytest.approx(0.0, abs=1e-9)
    # no gradients anywhere: wA = wB = 1/2 (the eps-regularised weights)
    want = 2 * (0.5 * (1 - _ssim_const(0.5, 0.2)) + 0.5 * (1 - _ssim_const(0.5, 0.9)))
    assert parts["ssim"] == pytest.approx(want, rel=1e-4)
    assert parts["gt_l1"] == pytest.approx(5 * 0.1, rel=1e-5)
    assert float(total) == pytest.approx(parts["total"])


def test_exposedness_intensity_closed_form():
    """Mertens well-exposedness weights on flat images: wA = E(A) / (E(A) + E(B)) up to e = 1e-4."""
    d = torch.float64
    out, a, b = _const(0.5, dtype=d), _const(0.98, dtype=d), _const(0.4, dtype=d)  # A nearly clipped
    ea, eb = math.exp(-0.48 ** 2 / 0.08), math.exp(-0.1 ** 2 / 0.08)
    wa = (ea + 1e-4) / (ea + eb + 2e-4)
    _, parts = FusionLoss(eta=(1, 0, 0), intensity_target="exposedness")(out, a, b)
    assert parts["intensity"] == pytest.approx(2 * (wa * 0.48 + (1 - wa) * 0.1), rel=1e-9)
    assert wa < 0.06  # the clipped source barely counts
    # the flat "not clipped" form (sigma, p) = (0.4, 8): 0.4 is fully exposed (weight ~1), 0.98 nearly out
    ea, eb = math.exp(-0.5 * (0.48 / 0.4) ** 8), math.exp(-0.5 * (0.1 / 0.4) ** 8)
    wa = (ea + 1e-4) / (ea + eb + 2e-4)
    _, parts = FusionLoss(eta=(1, 0, 0), intensity_target="exposedness", exposedness=(0.4, 8.0))(out, a, b)
    assert parts["intensity"] == pytest.approx(2 * (wa * 0.48 + (1 - wa) * 0.1), rel=1e-9)
    assert eb > 0.9999 and 0.1 < wa < 0.11
    # blurred weights of flat images are the same weights (reflected borders)
    _, blurred = FusionLoss(eta=(1, 0, 0), intensity_target="exposedness", exposedness=(0.4, 8.0),
                            exposedness_blur=3.0)(out, a, b)
    assert blurred["intensity"] == pytest.approx(parts["intensity"], rel=1e-9)
    # a clipped half-plane: the blurred weights equal scipy's Gaussian filter of E (mirror borders, 3 sigma)
    from scipy.ndimage import gaussian_filter

    a = _const(0.45, (1, 1, 24, 24), dtype=d)
    a[..., :, :12] = 1.0
    b, x = _const(0.3, (1, 1, 24, 24), dtype=d), torch.rand(1, 1, 24, 24, dtype=d)
    e = lambda z: gaussian_filter(torch.exp(-0.5 * ((z - 0.5).abs() / 0.2) ** 2)[0, 0].numpy(), 2.0,  # noqa: E731
                                  mode="mirror", truncate=3.0)
    ea, eb = e(a), e(b)
    wa = torch.from_numpy((ea + 1e-4) / (ea + eb + 2e-4))
    want = 2 * float((wa * (x - a).abs() + (1 - wa) * (x - b).abs()).mean())
    got = FusionLoss(eta=(1, 0, 0), intensity_target="exposedness", exposedness_blur=2.0)(x, a, b)[1]["intensity"]
    assert got == pytest.approx(want, rel=1e-9)
    # sources equally exposed (0.5 +- t): the Eq. 20 form exactly
    torch.manual_seed(4)
    t = 0.4 * torch.rand(2, 1, 16, 16, dtype=d)
    x = torch.rand(2, 1, 16, 16, dtype=d)
    got = FusionLoss(intensity_target="exposedness")(x, 0.5 + t, 0.5 - t)[1]["intensity"]
    assert got == pytest.approx(FusionLoss()(x, 0.5 + t, 0.5 - t)[1]["intensity"], rel=1e-9)
    with pytest.raises(ValueError, match="intensity_target"):
        FusionLoss(intensity_target="mertens")


def test_bright_intensity_closed_form():
    """``"bright"``: Eq. 20 where max(A, B) <= lo, 2 |F - max| where it is >= hi, a linear mix between (the ramp
    over ``bright_range``); a CT-like half-plane of saturated bone picks the bone value there."""
    d = torch.float64
    loss = FusionLoss(eta=(1, 0, 0), intensity_target="bright", bright_range=(0.7, 0.9))
    out, mri = _const(0.5, dtype=d), _const(0.3, dtype=d)
    for ct, w in ((0.6, 0.0), (1.0, 1.0), (0.8, 0.5), (0.75, 0.25)):
        want = 2 * w * abs(0.5 - ct) + (1 - w) * (abs(0.5 - ct) + 0.2)
        assert loss(out, mri, _const(ct, dtype=d))[1]["intensity"] == pytest.approx(want, rel=1e-9), ct
    # below the ramp it is the Eq. 20 form exactly, whatever F is
    torch.manual_seed(5)
    a, b, x = (s * torch.rand(2, 1, 16, 16, dtype=d) for s in (0.35, 0.7, 1.0))
    eq20 = FusionLoss(eta=(1, 0, 0))(x, a, b)[1]["intensity"]
    assert loss(x, a, b)[1]["intensity"] == pytest.approx(eq20, rel=1e-12)
    # bone half-plane: the cost is minimal at F = bone on the left half, anywhere in [A, B] on the right
    b = _const(0.4, (1, 1, 8, 8), dtype=d)
    b[..., :4] = 1.0
    a = _const(0.2, (1, 1, 8, 8), dtype=d)
    best = b.clone()
    worse = best.clone()
    worse[..., :4] = 0.6
    assert loss(best, a, b)[1]["intensity"] == pytest.approx(0.5 * 0.2, rel=1e-9)  # right half: |A - B|
    assert loss(worse, a, b)[1]["intensity"] == pytest.approx(0.5 * 2 * 0.4 + 0.5 * 0.2, rel=1e-9)
    with pytest.raises(ValueError, match="bright_range"):
        LossConfig(bright_range=(0.9, 0.7))


def test_exposure_blend_intensity_against_scipy():
    """``"exposure_blend"``: 2 L1 of the low-passed difference between F and the exposedness-weighted blend, against
    scipy's Gaussian filter (mirror borders); its minimiser on flat images is the blend, where the
    ``"exposedness"`` form's is the heavier source (a weighted L1 of two points)."""
    from scipy.ndimage import gaussian_filter

    d = torch.float64
    g = lambda z: gaussian_filter(z, 2.0, mode="mirror", truncate=3.0)  # noqa: E731
    a = _const(0.45, (1, 1, 24, 24), dtype=d)
    a[..., :, :12] = 1.0
    b, x = _const(0.3, (1, 1, 24, 24), dtype=d), torch.rand(1, 1, 24, 24, dtype=d)
    ea, eb = (g(torch.exp(-0.5 * ((z - 0.5).abs() / 0.2) ** 2)[0, 0].numpy()) for z in (a, b))
    wa = torch.from_numpy((ea + 1e-4) / (ea + eb + 2e-4))
    diff = (x - (wa * a + (1 - wa) * b))[0, 0].numpy()
    want = 2 * float(abs(g(diff)).mean())
    loss = FusionLoss(eta=(1, 0, 0), intensity_target="exposure_blend", exposedness_blur=2.0)
    assert loss(x, a, b)[1]["intensity"] == pytest.approx(want, rel=1e-9)
    # flat sources 0.98 (nearly clipped) and 0.4: the blend is the minimiser, not either source
    a, b = _const(0.98, dtype=d), _const(0.4, dtype=d)
    w = float(FusionLoss()._share(torch.tensor(math.exp(-0.48 ** 2 / 0.08), dtype=d),
                                  torch.tensor(math.exp(-0.1 ** 2 / 0.08), dtype=d)))
    blend = w * 0.98 + (1 - w) * 0.4
    cost = lambda t, v: FusionLoss(eta=(1, 0, 0), intensity_target=t, exposedness_blur=1.0)(  # noqa: E731
        _const(v, dtype=d), a, b)[1]["intensity"]
    assert cost("exposure_blend", blend) == pytest.approx(0.0, abs=1e-12)
    assert cost("exposure_blend", blend + 0.05) == pytest.approx(0.1, rel=1e-9)
    assert cost("exposedness", 0.4) < cost("exposedness", blend) < cost("exposedness", 0.98)


def _mef_ssim_patches(f, a, b, window, sigma, p=4.0, c2=0.03 ** 2):
    """Naive MEF-SSIM (Ma et al. 2015) per interior pixel: explicit Gaussian-weighted window vectors, float64."""
    import numpy as np

    r = window // 2
    x = np.arange(window) - r
    g1 = np.exp(-x ** 2 / (2 * sigma ** 2))
    g = np.outer(g1, g1) / np.outer(g1, g1).sum()
    H, W = f.shape
    out = np.zeros((H - 2 * r, W - 2 * r))
    for i in range(r, H - r):
        for j in range(r, W - r):
            win = lambda z: z[i - r:i + r + 1, j - r:j + r + 1]  # noqa: E731
            xs = [win(a) - (g * win(a)).sum(), win(b) - (g * win(b)).sum()]
            y = win(f) - (g * win(f)).sum()
            norm = lambda v: np.sqrt((g * v * v).sum())  # noqa: E731
            cs = [norm(v) for v in xs]
            s_bar = sum(c ** p * v / c for c, v in zip(cs, xs)) / sum(c ** p for c in cs)
            x_hat = max(cs) * s_bar / norm(s_bar)
            out[i - r, j - r] = (2 * (g * x_hat * y).sum() + c2) / ((g * x_hat * x_hat).sum() + (g * y * y).sum() + c2)
    return out


def test_mef_ssim_against_explicit_windows_and_closed_forms():
    """``mef_ssim_map`` equals the per-window definition (interior pixels); F = A = B scores 1; with B flat (a
    clipped source) the desired signal is A's, so the score is SSIM without its luminance term against A."""
    from fusion.losses import mef_ssim_map

    torch.manual_seed(5)
    d = torch.float64
    a, b, f = (torch.rand(1, 1, 14, 15, dtype=d) for _ in range(3))
    got = mef_ssim_map(f, a, b, window=5, sigma=1.5)[0, 0, 2:-2, 2:-2].numpy()
    want = _mef_ssim_patches(f[0, 0].numpy(), a[0, 0].numpy(), b[0, 0].numpy(), 5, 1.5)
    assert abs(got - want).max() < 1e-6
    assert torch.allclose(mef_ssim_map(a, a, a), torch.ones_like(a), atol=1e-6)
    flat = _const(1.0, (1, 1, 14, 15), dtype=d)
    got = mef_ssim_map(f, a, flat, window=5, sigma=1.5)
    from kornia.filters import gaussian_blur2d

    blur = lambda z: gaussian_blur2d(z, (5, 5), (1.5, 1.5), border_type="reflect")  # noqa: E731
    va, vf = blur(a * a) - blur(a) ** 2, blur(f * f) - blur(f) ** 2
    cov = blur(a * f) - blur(a) * blur(f)
    want = (2 * cov + 0.03 ** 2) / (va + vf + 0.03 ** 2)
    assert torch.allclose(got, want, atol=1e-5)
    # the loss term: eta2 (1 - mean MEF-SSIM): a mix that halves the textured source's contrast costs, a
    # brightness shift does not (no luminance term: the intensity term of Eq. 20 owns brightness)
    loss = FusionLoss(eta=(0, 1, 0), weighting="mef")
    assert loss(a, a, flat)[1]["ssim"] == pytest.approx(0.0, abs=1e-6)
    assert loss(a + 0.2, a, flat)[1]["ssim"] == pytest.approx(0.0, abs=1e-6)
    assert loss(0.5 * (a + flat), a, flat)[1]["ssim"] > 0.05
    x = f.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: mef_ssim_map(z, a, b).mean(), (x,), eps=1e-6, atol=1e-5)


def test_vif_mask_aware_intensity():
    torch.manual_seed(2)
    out, a, b = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    loss = FusionLoss(task="vif", eta=(1, 0, 0))
    ones = torch.ones(1, 1, 8, 8)
    _, parts = loss(out, a, b, mask=ones)
    assert parts["intensity"] == pytest.approx(float((out - a).abs().mean()), rel=1e-5)
    half = torch.zeros(1, 8, 8, dtype=torch.long)
    half[:, :4] = 3  # class map: top half foreground
    m = (half > 0).float()[:, None]
    _, parts = loss(out, a, b, mask=half)
    want = float((m * (out - a)).abs().mean() + ((1 - m) * (out - b)).abs().mean())
    assert parts["intensity"] == pytest.approx(want, rel=1e-5)
    # other tasks ignore the mask in the intensity term
    _, p_mef = FusionLoss(task="mef", eta=(1, 0, 0))(out, a, b, mask=ones)
    assert p_mef["intensity"] == pytest.approx(float((out - a).abs().mean() + (out - b).abs().mean()), rel=1e-5)


def test_unannotated_sample_trains_unguided_in_a_mixed_batch():
    """A sample without a mask has the same intensity term alone and beside an annotated sample: collate
    fills its mask with zeros, ``has_mask`` keeps it from reading as all background."""
    from fusion.data import collate

    torch.manual_seed(4)
    loss = FusionLoss(task="vif", eta=(1, 0, 0))
    out, a, b = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    m = (torch.rand(1, 8, 8) > 0.5).float()
    batch = collate([{"id": "annotated", "a": a[0], "mask": m}, {"id": "plain", "a": a[1]}])
    assert batch["has_mask"].tolist() == [True, False]
    _, mixed = loss(out, a, b, mask=batch["mask"], has_mask=batch["has_mask"])
    _, alone_annotated = loss(out[:1], a[:1], b[:1], mask=m[None])
    _, alone_plain = loss(out[1:], a[1:], b[1:])
    want = (alone_annotated["intensity"] + alone_plain["intensity"]) / 2
    assert mixed["intensity"] == pytest.approx(want, rel=1e-6)
    # and a batch whose masks are all real needs no flag
    _, both = loss(out, a, b, mask=torch.stack([m, m]))
    _, flagged = loss(out, a, b, mask=torch.stack([m, m]), has_mask=torch.tensor([True, True]))
    assert both["intensity"] == pytest.approx(flagged["intensity"], rel=1e-7)


def test_intensity_target_per_dataset_closed_form():
    """``intensity_targets``: each sample's intensity term by its dataset (longest id prefix), others unchanged."""
    d = torch.float64
    out, a, b = _const(0.5, (3, 1, 8, 8), d), _const(0.2, (3, 1, 8, 8), d), _const(0.9, (3, 1, 8, 8), d)
    ids = ["harvard/CT-MRI/2001", "harvard/SPECT-MRI/10001", "msrs/00001"]
    loss = FusionLoss(task="mif", eta=(1, 0, 0), intensity_targets={"harvard/CT-MRI": "max", "harvard": "sources"})
    _, parts = loss(out, a, b, ids=ids)
    sources, brightest = 0.3 + 0.4, 2 * 0.4       # L1(F, A) + L1(F, B); 2 L1(F, max(A, B))
    assert parts["intensity"] == pytest.approx((brightest + 2 * sources) / 3, rel=1e-12)
    _, plain = loss(out, a, b)                    # no ids (e.g. validation): the task-wide target
    assert plain["intensity"] == pytest.approx(sources, rel=1e-12)
    _, all_ct = loss(out, a, b, ids=["harvard/CT-MRI/x"] * 3)
    assert all_ct["intensity"] == pytest.approx(brightest, rel=1e-12)
    with pytest.raises(ValueError, match="2 ids for a batch of 3"):
        loss(out, a, b, ids=ids[:2])
    with pytest.raises(ValueError, match="intensity_target must be one of"):
        FusionLoss(intensity_targets={"harvard/CT-MRI": "brightest"})


def test_dataset_value_longest_prefix():
    from fusion.config import dataset_value
    from fusion.data.multi import weight_for

    table = {"harvard": 1.0, "harvard/CT-MRI": 3.0}
    assert dataset_value("harvard/CT-MRI/2001", table) == 3.0
    assert dataset_value("harvard/CT-MRI", table) == 3.0
    assert dataset_value("harvard/PET-MRI/25001", table) == 1.0
    assert dataset_value("harvard-CT/1", table, "none") == "none"   # whole path parts only
    assert weight_for("msrs", table) == 1.0 and weight_for("harvard/CT-MRI", table) == 3.0


def test_fusion_loss_gradcheck():
    torch.manual_seed(3)
    a = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    b = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    out = torch.rand(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    for weighting in ("image", "pixel"):
        loss = FusionLoss(weighting=weighting)
        assert torch.autograd.gradcheck(lambda o, fn=loss: fn(o, a, b)[0], (out,), eps=1e-6, atol=1e-4, fast_mode=True)
    pan = PanLoss()
    gt = torch.rand(1, 4, 12, 12, dtype=torch.float64)
    o4 = torch.rand(1, 4, 12, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda o: pan(o, None, None, gt=gt)[0], (o4,), eps=1e-6, atol=1e-4, fast_mode=True)


def test_pan_loss_closed_form_and_errors():
    out, gt = _const(0.5, (1, 4, 16, 16)), _const(0.3, (1, 4, 16, 16))
    total, parts = PanLoss(lam=0.1)(out, None, None, gt=gt)
    assert parts["l1"] == pytest.approx(0.2, rel=1e-5)
    assert parts["ssim"] == pytest.approx(0.1 * (1 - _ssim_const(0.5, 0.3)), rel=1e-4)
    assert float(total) == pytest.approx(parts["l1"] + parts["ssim"], rel=1e-6)
    assert float(PanLoss()(gt, None, None, gt=gt)[0]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="needs gt"):
        PanLoss()(out)


def test_build_loss_reads_task_config():
    from fusion.config import TASKS, get_config

    for task in TASKS:
        loss = build_loss(get_config(task))
        assert isinstance(loss, PanLoss if task in ("pan", "hmif") else FusionLoss)
    cfg = get_config("mff")
    loss = build_loss(cfg.replace(eta=(1.0, 0.0, 0.0), gt_weight=3.0))
    assert loss.eta == (1.0, 0.0, 0.0) and loss.gt_weight == 3.0 and loss.ssim_window == cfg.loss.ssim_window
    assert build_loss(get_config("pan")).lam == get_config("pan").loss.pan_lambda
    by_dataset = build_loss(get_config("mif", intensity_target_by_dataset={"harvard/CT-MRI": "max"}))
    assert by_dataset.intensity_targets == {"harvard/CT-MRI": "max"}
    with pytest.raises(ValueError, match="intensity_target_by_dataset"):
        get_config("mif", intensity_target_by_dataset={"harvard/CT-MRI": "brightest"})
