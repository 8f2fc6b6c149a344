"""BRWKV layer with self-modulation (main paper sec. 3) and the full block: MFM + input projection + BRWKV (main paper sec. 3.5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion.model.channel_mix import ChannelMix
from fusion.model.layers import DropPath, channel_mul, layer_norm_silu
from fusion.model.mfm import MultiModalFusion
from fusion.model.pointwise import EAGER
from fusion.model.spatial_mix import SpatialMix
from rwkvfusion_kernels.ops import layer_norm as ln_cpu


def split_conv1x1(parts: list[torch.Tensor], weight: torch.Tensor) -> torch.Tensor:
    """``conv1x1(cat(parts, dim=1), weight)`` (no bias) as a sum of per-part convolutions, without the
    concatenated copy: equal up to float rounding (the channel sum is split at the part boundaries).
    parts [B, C_i, H, W], weight [C_out, sum C_i, 1, 1] -> [B, C_out, H, W] (inference: summed in place)."""
    out, c0 = None, 0
    for p in parts:
        c1 = c0 + p.shape[1]
        y = F.conv2d(p, weight[:, c0:c1])
        out = y if out is None else out.add_(y)
        c0 = c1
    assert out is not None
    return out


class Modulator(nn.Module):
    """(scale, shift, gate) = Linear(s) split in three, s = SiLU(LN(x)) [..., C] (the LayerNorm's output and its SiLU
    come from one pass: ``layer_norm_silu``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 3 * dim, bias=False)

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Three [..., C] products with the proj weight's row blocks rather than slices of one [..., 3C] product:
        in training the backward of a slice zero-fills and copies into a [..., 3C] gradient per slice (a third of
        a VIF training step's elementwise time); here autograd sums three [..., C] input gradients instead."""
        return tuple(F.linear(s, w) for w in self.proj.weight.chunk(3, dim=0))  # type: ignore[return-value]


class BRWKVLayer(nn.Module):
    """Bidirectional RWKV layer on [B, C, H, W]:

    h = LN(x); x = x + gate * DropPath(SpatialMix((1 + scale) * h + shift)); then the same with ChannelMix.
    """

    def __init__(self, dim: int, ffn_ratio: int = 2, *, layer_id: int = 0, n_layers: int = 1,
                 drop_path: float = 0.0, block_index: int = 0, spatial_kwargs: dict | None = None) -> None:
        super().__init__()
        self.reverse = block_index % 2 == 1  # odd blocks scan the reversed orders
        self.norm1 = nn.LayerNorm(dim)
        self.mod1 = Modulator(dim)
        self.spatial = SpatialMix(dim, layer_id, n_layers, **(spatial_kwargs or {}))
        self.norm2 = nn.LayerNorm(dim)
        self.mod2 = Modulator(dim)
        self.channel = ChannelMix(dim, ffn_ratio)
        self.drop_path = DropPath(drop_path)
        self.pw = EAGER                                        # elementwise regions (fusion.model.pointwise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.permute(0, 2, 3, 1)  # [B, H, W, C]: contiguous for channels-last x, no copy
        if not torch.is_grad_enabled() and not self.training:   # inference (DropPath is the identity)
            return self._forward_no_grad(t).permute(0, 3, 1, 2)
        # (h, SiLU(h)) from one helper (the C training kernel, or F.layer_norm and F.silu where it does not apply)
        h, s = layer_norm_silu(t, self.norm1)
        scale, shift, gate = self.mod1(s)
        y, _ = self.spatial(self.pw.modulate(h, scale, shift), reverse=self.reverse)
        t = self.pw.gated_residual(t, gate, self.drop_path(y))
        h, s = layer_norm_silu(t, self.norm2)
        scale, shift, gate = self.mod2(s)
        t = self.pw.gated_residual(t, gate, self.drop_path(self.channel(self.pw.modulate(h, scale, shift))))
        return t.permute(0, 3, 1, 2)

    def _forward_no_grad(self, t: torch.Tensor, chunk: int = 1 << 15, keep_gate: int = 1 << 22) -> torch.Tensor:
        """Inference: the same operations in place, with the per-token parts (LayerNorms, modulations, channel
        mix) run over ``chunk`` tokens at a time: no [B, H, W, 3C] or [B, H, W, ratio*C] intermediates of the
        whole image, so the peak memory stays a few [B, H, W, C]. The first layer's gate is kept for the
        residual when the image has at most ``keep_gate`` values, else recomputed after the spatial mix."""
        B, H, W, C = t.shape
        x = t.reshape(-1, C)                                     # the block input, kept (residual)
        N = x.shape[0]
        w1, w2 = self.mod1.proj.weight, self.mod2.proj.weight    # (scale, shift, gate) rows
        keep = N * C <= keep_gate
        gate = torch.empty_like(x) if keep else None
        z = torch.empty_like(x)
        for i in range(0, N, chunk):                             # (1 + scale) * h + shift, and the gate
            _modulate_rows(x[i:i + chunk], self.norm1, w1, z[i:i + chunk], gate[i:i + chunk] if keep else None,
                           need_gate=keep)
        y = self.spatial(z.view(B, H, W, C), reverse=self.reverse)[0]
        del z
        out = y.reshape(-1, C)
        for i in range(0, N, chunk):                             # t = t + gate * y
            xc, yc = x[i:i + chunk], out[i:i + chunk]
            g = gate[i:i + chunk] if keep else _modulate_rows(xc, self.norm1, w1, None, None)
            torch.addcmul(xc, yc, g, out=yc)
        del gate
        zc = x.new_empty(min(chunk, N), C)
        for i in range(0, N, chunk):                             # t = t + gate * ChannelMix(...)
            tc = out[i:i + chunk]
            n = tc.shape[0]
            g = _modulate_rows(tc, self.norm2, w2, zc[:n], None)
            tc.addcmul_(*self.channel.gated_rows(zc[:n], g))
        return out.view(B, H, W, C)


def _modulate_rows(x: torch.Tensor, ln: nn.LayerNorm, w: torch.Tensor, z: torch.Tensor | None,
                   gate: torch.Tensor | None, *, need_gate: bool = True) -> torch.Tensor | None:
    """Inference: ``z = (1 + scale) * LN(x) + shift`` (into the [n, C] buffer z; None: not computed) and the
    gate, with (scale, shift, gate) = SiLU(LN(x)) w^T split in three; x [n, C] rows. Returns the gate (None
    when not ``need_gate``): the [n, C] buffer ``gate`` when given, else a new tensor (or, on the PyTorch
    path, a slice of the product). One pass of the fused C kernel where it applies; else LayerNorm + SiLU,
    one product and the elementwise steps."""
    C = x.shape[-1]
    if ln_cpu.modulated_usable(x, ln.weight, ln.bias, w):
        if need_gate and gate is None:
            gate = torch.empty_like(x)
        ln_cpu.modulated_layer_norm(x, ln.weight, ln.bias, ln.eps, w, z, gate if need_gate else None)
        return gate if need_gate else None
    h, s = layer_norm_silu(x, ln)                              # LN and SiLU in one pass (C kernel)
    if z is None:
        g = F.linear(s, w[2 * C:])
        return g if gate is None else gate.copy_(g)
    m = F.linear(s, w if need_gate else w[:2 * C])
    torch.add(m[:, :C].add(1).mul_(h), m[:, C:2 * C], out=z)
    if not need_gate:
        return None
    return m[:, 2 * C:] if gate is None else gate.copy_(m[:, 2 * C:])


class RWKVFusionBlock(nn.Module):
    """MFM + `Conv1x1(cat[x, lambda * text_img, f])` + BRWKV layer (main paper sec. 3.5, step 5).

    Guided blocks (encoder/middle) have mask and text branches; unguided ones (decoder, or a task without
    guidance) keep only the conditioning from the second modality. `lam` (per channel) starts at 0, so text
    guidance fades in during training. forward(x, cond, mask, text, text_mask) -> (x, text for the next block).
    """

    def __init__(self, dim: int, cond_dim: int, ffn_ratio: int = 2, *, mask_channels: int = 0,
                 text_channels: int = 0, text_ds_ratio: int = 1, update_text: bool = True, layer_id: int = 0,
                 n_layers: int = 1, drop_path: float = 0.0, block_index: int = 0,
                 spatial_kwargs: dict | None = None) -> None:
        super().__init__()
        self.mfm = MultiModalFusion(dim, cond_dim, mask_channels=mask_channels, text_channels=text_channels,
                                    text_ds_ratio=text_ds_ratio, update_text=update_text, layer_id=layer_id,
                                    n_layers=n_layers, block_index=block_index, spatial_kwargs=spatial_kwargs)
        self.has_text = text_channels > 0
        if self.has_text:
            self.lam = nn.Parameter(torch.zeros(dim))
        self.proj_in = nn.Conv2d(dim * (3 if self.has_text else 2), dim, 1, bias=False)
        self.brwkv = BRWKVLayer(dim, ffn_ratio, layer_id=layer_id, n_layers=n_layers, drop_path=drop_path,
                                block_index=block_index, spatial_kwargs=spatial_kwargs)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None,
                text: torch.Tensor | None = None, text_mask: torch.Tensor | None = None, *,
                cond_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        f, text_img, text_next = self.mfm(x, cond, mask, text, text_mask, cond_weight=cond_weight)
        parts = [x]
        if self.has_text:
            if text_img is None:
                raise ValueError("RWKVFusionBlock: this block has a text branch but got text=None")
            parts.append(channel_mul(text_img, self.lam))
        parts.append(f)
        del f, text_img
        if torch.is_grad_enabled():
            z = self.proj_in(torch.cat(parts, dim=1))
        else:                    # inference: no concatenated copy, one 1x1 conv per part (same sum, split)
            z = split_conv1x1(parts, self.proj_in.weight)
        del parts                                                # free the block's intermediates early
        return self.brwkv(z), text_next
