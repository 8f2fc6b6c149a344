"""Training objectives: the fusion loss of Eq. 20 and the pansharpening/HMIF loss of Eq. 19.

Both modules are called as ``loss(out, a, b, mask=None, gt=None) -> (total, parts)`` with the model's tensor
conventions (float images in [0, 1], [B, C, H, W]); ``parts`` maps each weighted term to a float for logging.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d, spatial_gradient
from torch import nn

from fusion.config import INTENSITY_TARGETS, LossConfig, TaskConfig, dataset_value

_L = LossConfig()  # constructor defaults are the registry's (Table 1), not copies


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 5, sigma: float = 1.5, data_range: float = 1.0
             ) -> torch.Tensor:
    """Differentiable SSIM map [B, C, H, W] with a normalised Gaussian window (kornia ``gaussian_blur2d``,
    reflected borders), C1 = (0.01 L)^2, C2 = (0.03 L)^2. Equals ``kornia.metrics.ssim(.., eps=0)`` for
    sigma 1.5; ``sigma`` is free here because the task config carries it."""
    return ssim_maps(x, (y,), window, sigma, data_range)[0]


def ssim_maps(x: torch.Tensor, ys: tuple[torch.Tensor, ...], window: int = 5, sigma: float = 1.5,
              data_range: float = 1.0) -> list[torch.Tensor]:
    """``[ssim_map(x, y) for y in ys]`` with x's moments computed once and every local mean of one call blurred
    in ONE depthwise convolution over the stacked channels (the blurs of single-channel images are each a
    call with fixed overhead, forward and backward: most of the loss's time at training crop sizes)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    C, n = x.shape[1], len(ys)
    stack = torch.cat([x, x * x, *ys, *(y * y for y in ys), *(x * y for y in ys)], dim=1)
    blurred = gaussian_blur2d(stack, (window, window), (sigma, sigma), border_type="reflect").split(C, dim=1)
    mx, bxx = blurred[0], blurred[1]
    sxx = bxx - mx * mx
    out = []
    for i in range(n):
        my, byy, bxy = blurred[2 + i], blurred[2 + n + i], blurred[2 + 2 * n + i]
        syy = byy - my * my
        sxy = bxy - mx * my
        out.append(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2)))
    return out


def mef_ssim_map(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5,
                 p: float = 4.0, data_range: float = 1.0, eps: float = 1e-12) -> torch.Tensor:
    """MEF-SSIM map [B, C, H, W] of F against sources A, B (Ma, Zeng, Wang, IEEE TIP 2015), one scale, with
    Gaussian-weighted windows (kornia ``gaussian_blur2d``, reflected borders) and inner products.

    Per window, with x~_k = x_k - mu_k, c_k = ||x~_k|| and s_k = x~_k / c_k: the desired signal x^ = c^ s^ has
    c^ = max_k c_k and s^ = s- / ||s-||, s- = sum_k c_k^p s_k / sum_k c_k^p; the score is
    (2 sigma(x^, F) + C2) / (c^2 + sigma(F)^2 + C2), C2 = (0.03 L)^2 (no luminance term). Written with the
    window's moments only: s- = sum_k g_k x~_k, g_k = c_k^(p-1) / sum_j c_j^p, so ||s-||^2 and sigma(s-, F) are
    combinations of the sources' (co)variances, and one depthwise blur of nine stacked maps gives them all.
    """
    c2 = (0.03 * data_range) ** 2
    C = f.shape[1]
    stack = torch.cat([a, b, f, a * a, b * b, f * f, a * b, a * f, b * f], dim=1)
    ma, mb, mf, aa, bb, ff, ab, af, bf = gaussian_blur2d(stack, (window, window), (sigma, sigma),
                                                         border_type="reflect").split(C, dim=1)
    vaa, vbb, vff = (aa - ma * ma).clamp_min(0), (bb - mb * mb).clamp_min(0), (ff - mf * mf).clamp_min(0)
    vab, vaf, vbf = ab - ma * mb, af - ma * mf, bf - mb * mf
    ca, cb = torch.sqrt(vaa + eps), torch.sqrt(vbb + eps)
    wa, wb = ca ** p, cb ** p
    ga, gb = wa / (ca * (wa + wb)), wb / (cb * (wa + wb))
    s_norm = torch.sqrt((ga * ga * vaa + gb * gb * vbb + 2 * ga * gb * vab).clamp_min(0) + eps)
    c_hat = torch.maximum(ca, cb)
    cov = c_hat * (ga * vaf + gb * vbf) / s_norm
    return (2 * cov + c2) / (c_hat * c_hat + vff + c2)


def sobel_abs(x: torch.Tensor) -> torch.Tensor:
    """S(x) = |Sobel_x| + |Sobel_y| per channel (kornia ``spatial_gradient``, unnormalised, replicate borders)."""
    g = spatial_gradient(x, mode="sobel", normalized=False)  # [B, C, 2, H, W]
    return g.abs().sum(dim=2)


def well_exposedness(x: torch.Tensor, sigma: float = 0.2, power: float = 2.0) -> torch.Tensor:
    """Well-exposedness exp(-(|x - 0.5| / sigma)^power / 2), same shape as x: Mertens et al. (Exposure Fusion,
    2007) for (sigma, power) = (0.2, 2); a larger power flattens it into a soft "not clipped" indicator."""
    return torch.exp(-0.5 * ((x - 0.5).abs() / sigma) ** power)


def _binary_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Foreground mask [B, 1, H, W] in {0, 1} from a float mask [B, K, H, W] (max over K) or a class map [B, H, W]."""
    if mask.dim() == 3:
        m = (mask > 0).to(like.dtype)[:, None]
    elif mask.dim() == 4:
        m = (mask.to(like.dtype).amax(dim=1, keepdim=True) > 0.5).to(like.dtype)
    else:
        raise ValueError(f"mask: expected [B, H, W] or [B, K, H, W], got shape {tuple(mask.shape)}")
    if m.shape[-2:] != like.shape[-2:]:
        raise ValueError(f"mask size {tuple(m.shape[-2:])} differs from image size {tuple(like.shape[-2:])}")
    return m


def _l1_per_sample(d: torch.Tensor) -> torch.Tensor:
    """Mean absolute value of each sample of ``d`` [B, ...] -> [B]."""
    return d.abs().flatten(1).mean(dim=1)


class FusionLoss(nn.Module):
    """Eq. 20, fusion tasks; F = fused Y, A = ir/MRI/under/far, B = vis/SPECT/over/near:

    * intensity ``eta1 (L1(F, A) + L1(F, B))``; for VIF with a mask m, ``eta1 (L1(m F, m A) + L1((1-m) F, (1-m) B))``,
      per sample: ``has_mask`` [B] bool marks the samples whose mask is real (collate fills the others with
      zeros); the rest take the unguided form, so a sample's term does not depend on its batch; with
      ``intensity_target="max"`` the unguided form is ``2 L1(F, max(A, B))`` instead, with ``"exposedness"``
      ``2 mean(wA |F - A| + wB |F - B|)`` with per-pixel weights from Mertens et al.'s well-exposedness
      E(X) = exp(-(|X - 0.5| / sigma)^p / 2) (``exposedness`` = (sigma, p), Mertens: (0.2, 2)), Gaussian-blurred
      with std ``exposedness_blur`` pixels when > 0 (smooth weights, as Mertens' coarse pyramid levels),
      wA = (E(A) + e) / (E(A) + E(B) + 2e), wB = 1 - wA (MEF: pulls F to the well-exposed source where the other
      is clipped; equal to the ``"sources"`` form where E(A) = E(B)); a weighted L1 of two points is minimised by
      the heavier one, so this form SELECTS a source per pixel; ``"exposure_blend"`` is ``2 L1(G(F), G(wA A + wB B))``
      instead, G the same Gaussian low-pass: the coarse brightness of the weighted blend, detail left to the SSIM
      and gradient terms (Mertens' multi-scale blend in one level); ``"bright"`` is
      ``mean(2 w |F - max(A, B)| + (1 - w)(|F - A| + |F - B|))`` with w = clip((max(A, B) - lo) / (hi - lo), 0, 1),
      ``bright_range`` = (lo, hi): the max target only where a source is near white (CT bone), Eq. 20 elsewhere;
      ``intensity_targets`` maps training datasets to another of these targets (``fusion.config.dataset_value`` of
      each sample's ``ids`` entry, e.g. max(A, B) for CT-MRI only);
    * SSIM ``eta2 (wA (1 - SSIM(F, A)) + wB (1 - SSIM(F, B)))``, Gaussian window ``ssim_window`` (5), sigma
      ``ssim_sigma`` (1.5), wA = (g_A + e) / (g_A + g_B + 2e), wB = 1 - wA, with g_X the mean of S(X) per image
      (``weighting="image"``, default) or per pixel with SSIM maps (``weighting="pixel"``); e = 1e-4 keeps
      flat sources at 1/2 each instead of letting float round-off in S decide; ``weighting="mef"`` replaces the
      term by ``eta2 (1 - MEF-SSIM(F; A, B))`` (``mef_ssim_map``: no luminance comparison, the desired local
      contrast is the larger source's, so a washed-out mix of a clipped and a well-exposed region costs);
    * gradient ``eta3 L1(S(F), max(S(A), S(B)))``, S = |Sobel_x| + |Sobel_y|;
    * ``+ gt_weight L1(F, GT)`` when a ground truth is given.
    Defaults (eta1, eta2, eta3) = (10, 2, 20), gt_weight = 5.
    """

    def __init__(self, task: str = "vif", eta: tuple[float, float, float] = _L.eta, gt_weight: float = _L.gt_weight,
                 ssim_window: int = _L.ssim_window, ssim_sigma: float = _L.ssim_sigma, weighting: str = _L.ssim_weighting,
                 eps: float = 1e-4, intensity_target: str = _L.intensity_target,
                 exposedness: tuple[float, float] = _L.exposedness, exposedness_blur: float = _L.exposedness_blur,
                 intensity_targets: Mapping[str, str] | None = None,
                 bright_range: tuple[float, float] = _L.bright_range):
        super().__init__()
        self.intensity_targets = dict(intensity_targets or {})
        for target in (intensity_target, *self.intensity_targets.values()):
            if target not in INTENSITY_TARGETS:
                raise ValueError(f"intensity_target must be one of {INTENSITY_TARGETS}, got {target!r}")
        self.intensity_target, self.exposedness = intensity_target, tuple(float(e) for e in exposedness)
        self.exposedness_blur = float(exposedness_blur)
        self.bright_range = (float(bright_range[0]), float(bright_range[1]))
        if weighting not in ("image", "pixel", "mef"):
            raise ValueError(f"weighting must be 'image', 'pixel' or 'mef', got {weighting!r}")
        self.task, self.eta, self.gt_weight = task, tuple(float(e) for e in eta), float(gt_weight)
        self.ssim_window, self.ssim_sigma, self.weighting, self.eps = ssim_window, ssim_sigma, weighting, eps

    def _share(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """Source A's weight (xa + e) / (xa + xb + 2e) from non-negative scores of A and B (equal scores: 1/2)."""
        return (xa + self.eps) / (xa + xb + 2 * self.eps)

    def _lowpass(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each x Gaussian-blurred with std ``exposedness_blur`` pixels (reflected borders); unchanged when 0."""
        s = self.exposedness_blur
        if s <= 0:
            return xs
        k = 2 * int(3 * s) + 1
        return tuple(gaussian_blur2d(x, (k, k), (s, s), border_type="reflect") for x in xs)

    def _intensity(self, target: str, out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The unguided intensity term of each sample [B] for one ``intensity_target``."""
        if target == "max":
            return 2.0 * _l1_per_sample(out - torch.maximum(a, b))
        if target == "bright":
            hi = torch.maximum(a, b)
            lo_v, hi_v = self.bright_range
            w = ((hi - lo_v) / (hi_v - lo_v)).clamp(0.0, 1.0)
            return _l1_per_sample(2.0 * w * (out - hi).abs() + (1 - w) * ((out - a).abs() + (out - b).abs()))
        if target in ("exposedness", "exposure_blend"):
            ea, eb = self._lowpass(well_exposedness(a, *self.exposedness), well_exposedness(b, *self.exposedness))
            wa = self._share(ea, eb)
            if target == "exposedness":
                return 2.0 * _l1_per_sample(wa * (out - a).abs() + (1 - wa) * (out - b).abs())
            return 2.0 * _l1_per_sample(self._lowpass(out - (wa * a + (1 - wa) * b))[0])
        return _l1_per_sample(out - a) + _l1_per_sample(out - b)

    def forward(self, out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None,
                gt: torch.Tensor | None = None, has_mask: torch.Tensor | None = None,
                ids: Sequence[str] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        if out.shape != a.shape or out.shape != b.shape:
            raise ValueError(f"FusionLoss: out {tuple(out.shape)}, a {tuple(a.shape)}, b {tuple(b.shape)} must match")
        e1, e2, e3 = self.eta
        intensity_b = self._intensity(self.intensity_target, out, a, b)
        if self.intensity_targets and ids is not None:
            if len(ids) != out.shape[0]:
                raise ValueError(f"FusionLoss: {len(ids)} ids for a batch of {out.shape[0]}")
            chosen = [dataset_value(i, self.intensity_targets, self.intensity_target) for i in ids]
            for target in sorted(set(chosen) - {self.intensity_target}):
                pick = torch.tensor([c == target for c in chosen], device=out.device)
                intensity_b = torch.where(pick, self._intensity(target, out, a, b), intensity_b)
        if mask is not None and self.task == "vif":
            m = _binary_mask(mask, out)
            guided = _l1_per_sample(m * (out - a)) + _l1_per_sample((1 - m) * (out - b))
            if has_mask is not None:
                if has_mask.shape != (out.shape[0],):
                    raise ValueError(f"FusionLoss: has_mask must be [B={out.shape[0]}], got {tuple(has_mask.shape)}")
                guided = torch.where(has_mask.to(out.device, torch.bool), guided, intensity_b)
            intensity_b = guided
        intensity = intensity_b.mean()
        sa, sb, sf = sobel_abs(torch.cat([a, b, out], dim=1)).split(out.shape[1], dim=1)  # one call
        if self.weighting == "mef":
            ssim_term = 1 - mef_ssim_map(out, a, b, self.ssim_window, self.ssim_sigma).mean()
        else:
            ssim_fa, ssim_fb = ssim_maps(out, (a, b), self.ssim_window, self.ssim_sigma)
            if self.weighting == "image":
                ga, gb = sa.mean(dim=(1, 2, 3)), sb.mean(dim=(1, 2, 3))
                wa = self._share(ga, gb)
                ssim_term = (wa * (1 - ssim_fa.mean(dim=(1, 2, 3)))
                             + (1 - wa) * (1 - ssim_fb.mean(dim=(1, 2, 3)))).mean()
            else:
                wa = self._share(sa, sb)
                ssim_term = (wa * (1 - ssim_fa) + (1 - wa) * (1 - ssim_fb)).mean()
        gradient = F.l1_loss(sf, torch.maximum(sa, sb))
        terms = {"intensity": e1 * intensity, "ssim": e2 * ssim_term, "gradient": e3 * gradient}
        if gt is not None:
            if gt.shape != out.shape:
                raise ValueError(f"FusionLoss: gt {tuple(gt.shape)} differs from out {tuple(out.shape)}")
            terms["gt_l1"] = self.gt_weight * F.l1_loss(out, gt)
        total = sum(terms.values())
        parts = {k: float(v.detach()) for k, v in terms.items()}
        parts["total"] = float(total.detach())
        return total, parts


class PanLoss(nn.Module):
    """Eq. 19, pansharpening and HMIF: ``L1(F, GT) + lambda (1 - SSIM(F, GT))``, lambda = 0.1.

    SSIM: Gaussian window ``ssim_window`` x ``ssim_window`` (default 11, the standard Wang et al. window),
    sigma 1.5, data range 1, mean over bands and pixels. ``a`` (lms) and ``b`` (PAN / HR-MSI) are accepted for
    the common call signature but not used (likewise ``mask``, ``has_mask`` and ``ids``); ``gt`` is required.
    """

    def __init__(self, lam: float = _L.pan_lambda, ssim_window: int = _L.pan_ssim_window, ssim_sigma: float = _L.ssim_sigma):
        super().__init__()
        self.lam, self.ssim_window, self.ssim_sigma = float(lam), ssim_window, ssim_sigma

    def forward(self, out: torch.Tensor, a: torch.Tensor | None = None, b: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, gt: torch.Tensor | None = None,
                has_mask: torch.Tensor | None = None, ids: Sequence[str] | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        if gt is None:
            raise ValueError("PanLoss: the pansharpening/HMIF loss needs gt (reduced-resolution reference)")
        if gt.shape != out.shape:
            raise ValueError(f"PanLoss: gt {tuple(gt.shape)} differs from out {tuple(out.shape)}")
        l1 = F.l1_loss(out, gt)
        ssim_term = self.lam * (1 - ssim_map(out, gt, self.ssim_window, self.ssim_sigma).mean())
        total = l1 + ssim_term
        return total, {"l1": float(l1.detach()), "ssim": float(ssim_term.detach()), "total": float(total.detach())}


def build_loss(cfg: TaskConfig) -> nn.Module:
    """The task's loss from ``cfg.loss``: ``PanLoss`` (Eq. 19) for pan/hmif, ``FusionLoss`` (Eq. 20) otherwise."""
    loss = cfg.loss
    if cfg.task in ("pan", "hmif"):
        return PanLoss(lam=loss.pan_lambda, ssim_window=loss.pan_ssim_window, ssim_sigma=loss.ssim_sigma)
    return FusionLoss(task=cfg.task, eta=loss.eta, gt_weight=loss.gt_weight, ssim_window=loss.ssim_window,
                      ssim_sigma=loss.ssim_sigma, weighting=loss.ssim_weighting,
                      intensity_target=loss.intensity_target, exposedness=loss.exposedness,
                      exposedness_blur=loss.exposedness_blur, intensity_targets=loss.intensity_target_by_dataset,
                      bright_range=loss.bright_range)
