"""RWKVFusion U-net (main paper sec. 3): guided encoder/middle stages, conditioned decoder stages, two output heads."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fusion.config import TaskConfig
from fusion.model.block import RWKVFusionBlock, split_conv1x1
from fusion.model.inputs import FusionNet, ModelInputs, to_channels_last
from fusion.model.layers import channel_mul, channels_last, conv_leaky_relu, drop_path_schedule, resize
from fusion.model.text import TextProjector


class Res3Conv(nn.Module):
    """SwinIR-style 3-conv: Conv3x3(C->C/2), LReLU, Conv1x1, LReLU, Conv3x3(C/2->C)."""

    def __init__(self, dim: int, bias: bool = True) -> None:
        super().__init__()
        r = max(1, dim // 2)
        self.body = nn.Sequential(
            nn.Conv2d(dim, r, 3, padding=1, bias=bias), nn.LeakyReLU(0.2),
            nn.Conv2d(r, r, 1, bias=bias), nn.LeakyReLU(0.2),
            nn.Conv2d(r, dim, 3, padding=1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.body(x)
        c1, a1, c2, a2, c3 = self.body                 # inference: each LeakyReLU fused into its convolution
        return c3(conv_leaky_relu(c2, conv_leaky_relu(c1, x, a1.negative_slope), a2.negative_slope))


class Downsample(nn.Module):
    """2x2 stride-2 conv (C -> C*up) times a learnable per-channel scale initialised to sqrt(2)."""

    def __init__(self, dim: int, up: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim * up, 2, stride=2, bias=False)
        self.scale = nn.Parameter(torch.full((dim * up,), math.sqrt(2.0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_mul(self.conv(x), self.scale, inplace=not torch.is_grad_enabled())


class Upsample(nn.Module):
    """Conv1x1 (C -> C/up) times a learnable scale (init 1/sqrt(2)), then bilinear x2."""

    def __init__(self, dim: int, up: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim // up, 1, bias=False)
        self.scale = nn.Parameter(torch.full((dim // up,), 1.0 / math.sqrt(2.0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = channel_mul(self.conv(x), self.scale, inplace=not torch.is_grad_enabled())
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class Stage(nn.Module):
    """N blocks then a 3-conv residual: out = Res3Conv(blocks(x)) + x (main paper sec. 3)."""

    def __init__(self, blocks: list[RWKVFusionBlock], dim: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.res = Res3Conv(dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None,
                text: torch.Tensor | None, text_mask: torch.Tensor | None, *,
                cond_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        y = x
        for blk in self.blocks:
            y, t = blk(y, cond, mask, text, text_mask, cond_weight=cond_weight)
            if blk.mfm.update_text:
                text = t
        return self.res(y) + x, text


def spatial_kwargs(cfg: TaskConfig) -> dict:
    """Spatial-mix settings of `cfg.model` (Eq. 2, main paper sec. 3.4)."""
    m = cfg.model
    return dict(op=m.spatial_op, gate=m.spatial_gate, scan_mode=m.scan_mode, wkv_impl=m.wkv_impl, head_dim=m.attn_head_dim)


def cond_channels(cfg: TaskConfig) -> int:
    """Input channels of the conditioning embedding: `b`, or cat[a, b] for cond_source "ab"."""
    m = cfg.model
    return m.b_channels if m.cond_source == "b" else m.a_channels + m.b_channels


def text_projector(cfg: TaskConfig) -> TextProjector | None:
    """The model-level text projection (main paper sec. 3.5), None when the task runs without text."""
    g = cfg.guidance
    return TextProjector(g.text_dim, cfg.model.text_hidden, g.text_max_len, g.text_drop) if g.use_text else None


def init_weights(module: nn.Module) -> None:
    """Linear: truncated normal std 0.02, conv: Xavier normal, biases 0, norms (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class RWKVFusion(FusionNet):
    """The RWKVFusion U-net for one task configuration.

    forward(a, b, text=None, text_mask=None, mask=None) -> out. Fusion tasks: a, b [B, 1, H, W] Y channels in
    [0, 1], out the fused Y [B, 1, H, W]. pan/hmif: a = upsampled LRMS [B, bands, H, W], b = PAN / HR-MSI,
    out = Conv3x3(Res3Conv(feat)) + a. Any H, W (padded to a multiple of 2**levels, cropped back).
    Output range: clamped to [0, 1] (`cfg.model.output_clamp`: "ste" = straight-through in training, so pixels
    beyond the range still get gradients; "hard" = plain clamp; "none").
    """

    def __init__(self, cfg: TaskConfig) -> None:
        super().__init__()
        if cfg.model.arch != "unet":
            raise ValueError(f"RWKVFusion: cfg.model.arch={cfg.model.arch!r}; use fusion.model.plain.PlainRWKV")
        self.cfg = cfg
        C = cfg.model.base_channels
        sk = spatial_kwargs(cfg)
        self.patch_embed = nn.Conv2d(cfg.model.a_channels + cfg.model.b_channels, C, 1, bias=False)
        self.cond_embed = nn.Conv2d(cond_channels(cfg), C, 1, bias=False)
        self.text_proj = text_projector(cfg)
        if cfg.guidance.mask_kind == "onehot":
            self.mask_embed = nn.Conv2d(cfg.guidance.mask_classes, C, 1, bias=False)
            mask_ch = C
        else:
            self.mask_embed = None
            mask_ch = cfg.guidance.mask_in_channels

        depth = sum(cfg.model.enc_layers) + cfg.model.mid_layers + sum(cfg.model.dec_layers)
        rates = drop_path_schedule(depth, cfg.model.drop_path)
        n_guided = sum(cfg.model.enc_layers) + cfg.model.mid_layers
        idx = 0
        text_ch = cfg.model.text_hidden if cfg.guidance.use_text else 0

        def block(dim: int, ffn: int, guided: bool, ds: int) -> RWKVFusionBlock:
            nonlocal idx, text_ch
            b = RWKVFusionBlock(
                dim, C, ffn, mask_channels=mask_ch if guided else 0, text_channels=text_ch if guided else 0,
                text_ds_ratio=ds, update_text=guided and idx < n_guided - 1, layer_id=idx, n_layers=depth,
                drop_path=rates[idx], block_index=idx, spatial_kwargs=sk)
            if guided and cfg.guidance.use_text:
                text_ch = dim  # the text stream leaves each guided block at that block's width
            idx += 1
            return b

        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        dims = []
        chan = C
        for lvl, n in enumerate(cfg.model.enc_layers):
            blocks = [block(chan, cfg.model.ffn_ratios[lvl], True, cfg.model.text_ds_ratios[lvl]) for _ in range(n)]
            self.encoders.append(Stage(blocks, chan))
            dims.append(chan)
            self.downs.append(Downsample(chan, cfg.model.chan_upscales[lvl]))
            chan *= cfg.model.chan_upscales[lvl]
        self.middle = Stage([block(chan, cfg.model.ffn_ratios[-1], True, cfg.model.text_ds_ratios[-1])
                             for _ in range(cfg.model.mid_layers)], chan)
        self.ups, self.skip_scales, self.skip_fuse, self.decoders = (nn.ModuleList(), nn.ParameterList(),
                                                                     nn.ModuleList(), nn.ModuleList())
        for lvl in reversed(range(cfg.model.n_levels)):
            up = cfg.model.chan_upscales[lvl]
            self.ups.append(Upsample(chan, up))
            chan //= up
            self.skip_scales.append(nn.Parameter(torch.full((chan,), 1.0 / math.sqrt(2.0))))
            self.skip_fuse.append(nn.Conv2d(2 * chan, chan, 1, bias=False))
            blocks = [block(chan, cfg.model.ffn_ratios[lvl], False, 1) for _ in range(cfg.model.dec_layers[lvl])]
            self.decoders.append(Stage(blocks, chan))
        self.body_out = Res3Conv(C, bias=False)
        base = cfg.model.fusion_base if cfg.model.head == "fusion" else "none"
        head_out = {"weights": cfg.model.out_channels + 1, "select": 1}.get(base, cfg.model.out_channels)
        self.head = nn.Conv2d(C, head_out, 3, padding=1)  # weights: logit channel first, then the residual
        init_weights(self)
        if cfg.model.head == "fusion" and cfg.model.fusion_base != "none":  # start from the average
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def _forward(self, inp: ModelInputs) -> torch.Tensor:
        cfg = self.cfg
        inp = to_channels_last(inp)
        def embed() -> torch.Tensor:       # channels_last: 1-channel tensors get explicit channels-last strides
            return channels_last(self.patch_embed(channels_last(torch.cat([inp.a, inp.b], dim=1))))

        x0 = embed()
        # the 1x1 conditioning embedding is folded into each block's 3x3 cond_conv when the source has fewer
        # channels than the embedding (VIF: 1 -> 32), so the blocks get the raw source, resized per level
        fold = self.cond_embed.in_channels < self.cond_embed.out_channels
        cond_w = self.cond_embed.weight if fold else None
        cond_full = channels_last(self.condition_source(inp) if fold else self.condition(inp))
        mask_full = inp.mask
        if mask_full is not None and self.mask_embed is not None:
            mask_full = self.mask_embed(mask_full)
        cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]] = {}

        def conds(size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
            if size not in cache:  # resized from full resolution at every level (bilinear / nearest)
                m = resize(mask_full, size, "nearest") if mask_full is not None else None
                cache[size] = (resize(cond_full, size), m)
            return cache[size]

        text, tmask = inp.text, inp.text_mask
        x, skips = x0, []
        keep_x0 = torch.is_grad_enabled()     # inference: recompute the cheap embedding at the end instead
        if not keep_x0:
            del x0
        for enc, down in zip(self.encoders, self.downs):
            c, m = conds(tuple(x.shape[-2:]))
            x, text = enc(x, c, m, text, tmask, cond_weight=cond_w)
            skips.append(x)
            x = down(x)
        c, m = conds(tuple(x.shape[-2:]))
        x, _ = self.middle(x, c, m, text, tmask, cond_weight=cond_w)
        for up, scale, fuse, dec in zip(self.ups, self.skip_scales, self.skip_fuse, self.decoders):
            skip = skips.pop()                                       # deepest first; freed once fused
            x = up(x)
            parts = [x, channel_mul(skip, scale)]
            del skip, x
            x = fuse(torch.cat(parts, dim=1)) if torch.is_grad_enabled() else split_conv1x1(parts, fuse.weight)
            del parts
            c, _ = conds(tuple(x.shape[-2:]))
            x, _ = dec(x, c, None, None, None, cond_weight=cond_w)
        feat = self.body_out(x)
        if cfg.model.head == "fusion":
            out = self.head(feat + (x0 if keep_x0 else embed()))
            if cfg.model.fusion_base == "mean":
                out = out + 0.5 * (inp.a + inp.b)
            elif cfg.model.fusion_base in ("weights", "select"):   # weight logit first, then ("weights") residual
                mix = inp.b + torch.sigmoid(out[:, :1]) * (inp.a - inp.b)
                out = mix + out[:, 1:] if cfg.model.fusion_base == "weights" else mix
        else:
            out = self.head(feat) + inp.a
        return out[..., : inp.hw[0], : inp.hw[1]]
