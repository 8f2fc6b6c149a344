"""Plain-RWKV ablation backbone (supplement sec. 5, Fig. 1): SwinIR-like, no U-net, no long skip.

Conv3x3 shallow feature extraction -> `cfg.model.plain_layers` RWKV layers, each guided by the MFM (mask and text in
every layer) -> reconstruction by the sub-pixel convolution head, which at scale factor 1 (the inputs are already at the
output size: pan/hmif take the upsampled LRMS) is a single Conv3x3 to the output channels. pan/hmif add the upsampled LRMS (residual head).
"""
from __future__ import annotations

import torch
from torch import nn

from fusion.config import TaskConfig
from fusion.model.block import RWKVFusionBlock
from fusion.model.inputs import FusionNet, ModelInputs
from fusion.model.unet import cond_channels, init_weights, spatial_kwargs, text_projector


class PlainRWKV(FusionNet):
    """forward(a, b, text=None, text_mask=None, mask=None) -> out; same conventions as `RWKVFusion`."""

    def __init__(self, cfg: TaskConfig) -> None:
        super().__init__()
        if cfg.model.arch != "plain":
            raise ValueError(f"PlainRWKV: cfg.model.arch={cfg.model.arch!r}; use fusion.model.unet.RWKVFusion")
        self.cfg = cfg
        C, n = cfg.model.base_channels, cfg.model.plain_layers
        if n < 1:
            raise ValueError(f"PlainRWKV: cfg.model.plain_layers must be >= 1, got {n}")
        self.shallow = nn.Conv2d(cfg.model.a_channels + cfg.model.b_channels, C, 3, padding=1)
        self.cond_embed = nn.Conv2d(cond_channels(cfg), C, 1, bias=False)
        self.text_proj = text_projector(cfg)
        onehot = cfg.guidance.mask_kind == "onehot"
        self.mask_embed = nn.Conv2d(cfg.guidance.mask_classes, C, 1, bias=False) if onehot else None
        mask_ch = C if onehot else cfg.guidance.mask_in_channels
        rates = torch.linspace(0.0, cfg.model.drop_path, n).tolist() if n > 1 else [0.0]
        sk = spatial_kwargs(cfg)
        blocks = []
        for i in range(n):
            blocks.append(RWKVFusionBlock(
                C, C, cfg.model.ffn_ratios[0], mask_channels=mask_ch,
                text_channels=(cfg.model.text_hidden if i == 0 else C) if cfg.guidance.use_text else 0,
                text_ds_ratio=cfg.model.text_ds_ratios[0], update_text=i < n - 1, layer_id=i, n_layers=n,
                drop_path=rates[i], block_index=i, spatial_kwargs=sk))
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(C, cfg.model.out_channels, 3, padding=1)
        init_weights(self)

    def _forward(self, inp: ModelInputs) -> torch.Tensor:
        cfg = self.cfg
        x = self.shallow(torch.cat([inp.a, inp.b], dim=1))
        cond = self.condition(inp)
        m = self.mask_embed(inp.mask) if (self.mask_embed is not None and inp.mask is not None) else inp.mask
        text = inp.text
        for blk in self.blocks:
            x, t = blk(x, cond, m, text, inp.text_mask)
            if blk.mfm.update_text:
                text = t
        out = self.head(x)
        if cfg.model.head == "residual":
            out = out + inp.a
        return out[..., : inp.hw[0], : inp.hw[1]]
