"""Small shared layers: channel LayerNorm for [B, C, H, W], DropPath, resizing helpers."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from rwkvfusion_kernels.ops import layer_norm as ln_cpu
from rwkvfusion_kernels.ops.layer_norm import autograd as ln_train


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] stored as [B, H, W, C] (same values and shape), unambiguously also for C == 1.

    ``x.contiguous(memory_format=torch.channels_last)`` keeps a 1-channel tensor's NCHW strides (both layouts
    hold its elements in the same order), and convolutions then pick the NCHW algorithm and return NCHW
    outputs. Here a 1-channel tensor gets the channels-last strides ``(H*W, 1, W, 1)`` as a view of the same
    memory, so e.g. ``conv2d(channels_last(x1), w)`` returns a channels-last [B, C', H, W] without a copy.
    """
    x = x.contiguous(memory_format=torch.channels_last)
    if x.shape[1] == 1 and x.dim() == 4:
        B, _, H, W = x.shape
        x = x.as_strided(x.shape, (H * W, 1, W, 1))
    return x


def channel_mul(x: torch.Tensor, s: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """``x * s`` for x [B, C, H, W] and a per-channel factor s ([C] or [B, C, 1, 1]), same values.

    For a channels-last x the product is formed on the token view [B, H, W, C] (the factor broadcast along the
    contiguous last axis), several times faster than PyTorch's broadcast over the NCHW view of the same memory.
    ``inplace`` (no autograd) writes into x.
    """
    if x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous():
        return x.mul_(s.view(-1, 1, 1) if s.dim() == 1 else s) if inplace else x * (s.view(-1, 1, 1) if s.dim() == 1 else s)
    t = x.permute(0, 2, 3, 1)
    f = s.reshape(1, 1, 1, -1) if s.dim() == 1 else s.reshape(s.shape[0], 1, 1, s.shape[1])
    return (t.mul_(f) if inplace else t * f).permute(0, 3, 1, 2)


def layer_norm(x: torch.Tensor, ln: nn.LayerNorm, *, inplace: bool = False) -> torch.Tensor:
    """``ln(x)`` for tokens x [..., C]; in CPU inference (float32, no autograd) through the C kernel of
    ``rwkvfusion_kernels.ops.layer_norm`` (same values up to float32 rounding), in CPU float32 training through
    its C forward and backward (``layer_norm.autograd``), else ``F.layer_norm``.
    ``inplace``: the kernel may overwrite x (a buffer the caller no longer needs)."""
    if ln_cpu.usable(x, ln.weight, ln.bias):
        return ln_cpu.layer_norm(x, ln.weight, ln.bias, ln.eps, inplace=inplace)
    if torch.is_grad_enabled() and ln_train.usable(x, ln.weight, ln.bias):     # CPU training: C forward/backward
        return ln_train.layer_norm_train(x, ln.weight, ln.bias, ln.eps)
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def layer_norm_silu(x: torch.Tensor, ln: nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, SiLU(h)) with h = ``ln(x)``, x [..., C]: one pass of the C kernel in CPU inference."""
    if ln_cpu.usable(x, ln.weight, ln.bias):
        return ln_cpu.layer_norm_silu(x, ln.weight, ln.bias, ln.eps)
    if torch.is_grad_enabled() and ln_train.usable(x, ln.weight, ln.bias):
        return ln_train.layer_norm_train(x, ln.weight, ln.bias, ln.eps, silu=True)
    h = F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
    return h, F.silu(h)


@functools.cache
def _fused_conv_act() -> bool:
    """oneDNN's convolution with a fused pointwise activation (``torch.ops.mkldnn._convolution_pointwise``, the
    op Inductor's CPU fusion emits) exists in this build and matches the unfused result on a probe."""
    op = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        with torch.inference_mode():
            g = torch.Generator().manual_seed(0)
            x = torch.randn(1, 8, 7, 9, generator=g).contiguous(memory_format=torch.channels_last)
            w, b = torch.randn(4, 8, 3, 3, generator=g), torch.randn(4, generator=g)
            y = op(x, w, b, [1, 1], [1, 1], [1, 1], 1, "leaky_relu", [0.2], "")
            return bool(torch.allclose(y, F.leaky_relu(F.conv2d(x, w, b, padding=1), 0.2), atol=1e-5))
    except RuntimeError:
        return False


def conv_leaky_relu(conv: nn.Conv2d, x: torch.Tensor, slope: float) -> torch.Tensor:
    """``leaky_relu(conv(x), slope)`` for x [B, C, H, W]; in CPU float32 inference on channels-last x one oneDNN
    call with the activation fused into the convolution's output pass (same values; saves a pass over the
    output, ~0.3 ms per 256x256x16 map on 2 cores)."""
    if (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and x.is_contiguous(memory_format=torch.channels_last) and _fused_conv_act()):
        return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, list(conv.padding),
                                                       list(conv.stride), list(conv.dilation), conv.groups,
                                                       "leaky_relu", [float(slope)], "")
    return F.leaky_relu(conv(x), slope)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of a [B, C, H, W] tensor (with bias)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C, H, W]
        return layer_norm(x.permute(0, 2, 3, 1), self).permute(0, 3, 1, 2)


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability p (scaled by 1/(1-p)) in training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropPath: p={p} not in [0, 1)")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize [B, C, H, W] to `size` (bilinear, align_corners=False, or nearest); no-op when equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> torch.Tensor:
    """Pad the bottom/right of [B, C, H, W] so H and W are multiples of `multiple` (reflect, else replicate)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    if mode == "reflect" and (ph >= h or pw >= w):
        mode = "replicate"  # reflect needs pad < size
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def drop_path_schedule(depth: int, max_rate: float) -> list[float]:
    """Drop-path rate per block: rises linearly 0 -> max over the first half of the depth, mirrored after.

    e.g. depth 5, max 0.2 -> [0, 0.1, 0.2, 0.1, 0]: symmetric, peaking in the middle block.
    """
    if depth <= 0:
        return []
    half = (depth + 1) // 2
    rise = torch.linspace(0.0, max_rate, half).tolist() if half > 1 else [0.0]
    return rise + rise[: depth - half][::-1]
