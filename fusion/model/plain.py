"""Plain-RWKV ablation backbone (supplement sec. 5, Fig. 1): SwinIR-like, no U-net, no long skip.

Conv3x3 shallow feature extraction -> `cfg.plain_layers` RWKV layers, each guided by the MFM (mask and text in
every layer) -> reconstruction by the sub-pixel convolution head, which at scale factor 1 (the inputs are already at the
output size: pan/hmif take the upsampled LRMS) is a single Conv3x3 to the output channels. pan/hmif add the upsampled LRMS (residual head).
"""
from __future__ import annotations

import torch
from torch import nn

from fusion.config import TaskConfig
from fusion.model.block import RWKVFusionBlock
from fusion.model.inputs import FusionNet, ModelInputs
from fusion.model.text import TextProjector
from fusion.model.unet import init_weights, spatial_kwargs


class PlainRWKV(FusionNet):
    """forward(a, b, text=None, text_mask=None, mask=None) -> out; same conventions as `RWKVFusion`."""

    def __init__(self, cfg: TaskConfig) -> None:
        super().__init__()
        if cfg.arch != "plain":
            raise ValueError(f"PlainRWKV: cfg.arch={cfg.arch!r}; use fusion.model.unet.RWKVFusion")
        self.cfg = cfg
        C, n = cfg.base_channels, cfg.plain_layers
        if n < 1:
            raise ValueError(f"PlainRWKV: cfg.plain_layers must be >= 1, got {n}")
        self.shallow = nn.Conv2d(cfg.a_channels + cfg.b_channels, C, 3, padding=1)
        cond_in = cfg.b_channels if cfg.cond_source == "b" else cfg.a_channels + cfg.b_channels
        self.cond_embed = nn.Conv2d(cond_in, C, 1, bias=False)
        self.text_proj = (TextProjector(cfg.text_dim, cfg.text_hidden, cfg.text_max_len, cfg.text_drop)
                          if cfg.use_text else None)
        self.mask_embed = nn.Conv2d(cfg.mask_classes, C, 1, bias=False) if cfg.mask_kind == "onehot" else None
        mask_ch = C if cfg.mask_kind == "onehot" else cfg.mask_in_channels
        rates = torch.linspace(0.0, cfg.drop_path, n).tolist() if n > 1 else [0.0]
        sk = spatial_kwargs(cfg)
        blocks = []
        for i in range(n):
            blocks.append(RWKVFusionBlock(
                C, C, cfg.ffn_ratios[0], mask_channels=mask_ch,
                text_channels=(cfg.text_hidden if i == 0 else C) if cfg.use_text else 0,
                text_ds_ratio=cfg.text_ds_ratios[0], update_text=i < n - 1, layer_id=i, n_layers=n,
                drop_path=rates[i], block_index=i, spatial_kwargs=sk))
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(C, cfg.out_channels, 3, padding=1)
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
        if cfg.head == "residual":
            out = out + inp.a
        return out[..., : inp.hw[0], : inp.hw[1]]
