"""Multi-modal fusion module (MFM, main paper sec. 3.5, Fig. 5(c)): conditioning, channel gate, mask branch, joint image-text mix."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion.model.layers import LayerNorm2d, channel_mul, channels_last, conv_leaky_relu, layer_norm, resize
from fusion.model.pointwise import EAGER
from fusion.model.spatial_mix import SpatialMix
from rwkvfusion_kernels.ops import layer_norm as ln_cpu


def folded_conv(x: torch.Tensor, w3: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    """``conv3x3(conv1x1(x, w1), w3)`` (padding 1, no biases) as ONE 3x3 conv with ``w3 . w1``.

    Exact up to float rounding: both maps are linear and the bias-free 1x1 maps the zero padding to zero.
    With Cs = x's channels < w1's outputs this does ~Cs/C of the work; it also commutes with the bilinear
    / nearest resizing of the source (a per-pixel linear map commutes with a per-channel resampling).
    x [B, Cs, H, W], w1 [Cm, Cs, 1, 1], w3 [C, Cm, 3, 3] -> [B, C, H, W] (channels-last).
    """
    w = torch.einsum("omhw,ms->oshw", w3, w1[:, :, 0, 0])
    return channels_last(F.conv2d(channels_last(x), w, padding=1))


class GeluMLP(nn.Module):
    """`Linear(C->C) -> GELU(tanh) -> Linear(C->C)` on [..., C] tokens."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or dim
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if ln_cpu.gelu_usable(h):                     # inference: the C kernel, in place
            return self.fc2(ln_cpu.gelu_tanh_(h))
        return self.fc2(F.gelu(h, approximate="tanh"))


class MultiModalFusion(nn.Module):
    """MFM of one block (main paper sec. 3.5, steps 1-4).

    Inputs: x [B, C, H, W] block input; cond [B, Cc, H, W] conditioning feature (second modality) at this
    level; mask [B, Cm, H, W] or None (the all-zero mask of an absent annotation); text [B, L, Ct] or None
    (+ text_mask [B, L], True = real token).
    Returns (f [B, C, H, W] = Conv1x1(LN(fused)), text_img [B, C, H, W] or None, text_next [B, L, C] or None).
    `text_next` feeds the next guided block's text input (None when `update_text` is False, i.e. the last
    guided block, whose text stream would go unused).
    """

    def __init__(self, dim: int, cond_dim: int, *, mask_channels: int = 0, text_channels: int = 0,
                 text_ds_ratio: int = 1, update_text: bool = True, layer_id: int = 0, n_layers: int = 1,
                 block_index: int = 0, spatial_kwargs: dict | None = None) -> None:
        super().__init__()
        self.dim, self.text_ds_ratio = dim, int(text_ds_ratio)
        self.reverse = block_index % 2 == 1       # ESS direction alternates per block
        self.text_first = block_index % 2 == 1    # [image; text] in even blocks, [text; image] in odd ones
        # 1. conditioning and feature encoders
        self.cond_conv = nn.Conv2d(cond_dim, dim, 3, padding=1, bias=False)
        self.cond_norm = LayerNorm2d(dim)
        self.feat = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
            nn.Conv2d(dim, dim, 1, bias=False),
            nn.LeakyReLU(0.2),
            LayerNorm2d(dim),
        )
        # 2. channel gate
        self.gate_norm = LayerNorm2d(dim)
        self.gate_conv = nn.Conv2d(dim, dim, 1, bias=False)
        # 3. mask branch
        self.has_mask = mask_channels > 0
        if self.has_mask:
            self.mask_convs = nn.Sequential(
                nn.Conv2d(mask_channels, dim // 2 or 1, 1, bias=False),
                nn.Conv2d(dim // 2 or 1, dim, 3, padding=1, bias=False),
                LayerNorm2d(dim),
                nn.SiLU(),
            )
        self.out_proj = nn.Sequential(LayerNorm2d(dim), nn.Conv2d(dim, dim, 1))
        self.pw = EAGER                                        # elementwise regions (fusion.model.pointwise)
        # 4. text branch
        self.has_text = text_channels > 0
        self.update_text = update_text and self.has_text
        if self.has_text:
            self.text_in = nn.Sequential(nn.LayerNorm(text_channels), nn.Linear(text_channels, dim, bias=False))
            self.img_norm = nn.LayerNorm(dim)
            self.text_norm = nn.LayerNorm(dim)
            self.joint_mix = SpatialMix(dim, layer_id, n_layers, **(spatial_kwargs or {}))
            self.img_mlp = GeluMLP(dim)
            if self.update_text:
                self.text_mlp = GeluMLP(dim)
                self.text_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None,
                text: torch.Tensor | None = None, text_mask: torch.Tensor | None = None, *,
                cond_weight: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``cond_weight`` [C, Cs, 1, 1] (the model's bias-free 1x1 conditioning embedding): when given, ``cond``
        is the raw source [B, Cs, H, W] and the embedding is folded into ``cond_conv`` (see ``folded_conv``)."""
        if cond_weight is not None:
            modal = self.cond_norm(folded_conv(cond, self.cond_conv.weight, cond_weight))
        else:
            modal = self.cond_norm(self.cond_conv(cond))
        if torch.is_grad_enabled():
            f = self.feat(x)
        else:                                           # inference: the LeakyReLU fused into the 1x1 convolution
            depthwise, pointwise, act, norm = self.feat
            f = norm(conv_leaky_relu(pointwise, depthwise(x), act.negative_slope))
        s = f + modal
        g = self._channel_gate(s)                               # [B, C, 1, 1]
        if self.has_mask and mask is None:
            # the all-zero (absent) mask: fused + f * m + modal * m with the per-channel m = mask_convs(0) is
            # (f + modal) * (g + m), the same sum without the full-resolution mask convolutions
            g = g + self.zero_mask_response().view(1, -1, 1, 1)
        if torch.is_grad_enabled():
            fused = self.pw.gate_sum(f, modal, g)
        else:          # inference: (f + modal) * g, in place (equal up to rounding; one product, not two)
            fused = channel_mul(s, g, inplace=True)
        del s
        if self.has_mask and mask is not None:                  # (mask None: all zero, folded into g above)
            first, second = self.mask_convs[0], self.mask_convs[1]
            if mask.shape[1] < first.out_channels:      # fewer mask channels than the 1x1's outputs: fold it
                m = folded_conv(mask, second.weight, first.weight)
            else:
                m = second(first(mask))
            m = self.mask_convs[2:](m)
            fused = fused + f * m + modal * m
        f_out = self.out_proj(fused)
        if not self.has_text or text is None:
            return f_out, None, None
        return (f_out, *self._text_branch(f_out, text, text_mask))

    def zero_mask_response(self) -> torch.Tensor:
        """The mask branch's output for an all-zero mask, one value per channel [C]: the bias-free convolutions
        map 0 to 0 and the LayerNorm maps a zero token to its bias, so it is SiLU(bias) (exactly)."""
        norm, act = self.mask_convs[2], self.mask_convs[3]
        return act(norm.bias)

    def _channel_gate(self, s: torch.Tensor) -> torch.Tensor:
        """sigmoid(Conv1x1(AvgPool(LN(s)))) for s [B, C, H, W] (channels-last) -> [B, C, 1, 1].

        The pooling is a mean over the token view [B, H, W, C]: in training its backward is then a broadcast
        in token order, not an NCHW gradient that the LayerNorm backward would have to copy.
        """
        pooled = layer_norm(s.permute(0, 2, 3, 1), self.gate_norm).mean(dim=(1, 2))     # [B, C]
        g = torch.sigmoid(F.linear(pooled, self.gate_conv.weight[:, :, 0, 0]))
        return g[:, :, None, None]

    def _text_branch(self, f: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None,
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Step 4: one spatial mix over [downsampled image tokens; text tokens], residual on both streams."""
        H, W = f.shape[-2:]
        r = self.text_ds_ratio
        small = (max(1, H // r), max(1, W // r))
        t = self.text_in(text)                                   # [B, L, C]
        img = resize(f, small).permute(0, 2, 3, 1)              # [B, h, w, C]
        y_img, y_txt = self.joint_mix(self.img_norm(img), reverse=self.reverse, text=self.text_norm(t),
                                      text_mask=text_mask, text_first=self.text_first,
                                      need_text=self.update_text)
        img = resize((img + y_img).permute(0, 3, 1, 2), (H, W))  # back to the level's size
        img = img + self.img_mlp(img.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if not self.update_text:
            return img, None
        t = t + y_txt
        t = t + self.text_mlp(t)
        return img, self.text_out(t)
