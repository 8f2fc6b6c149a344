"""Channel mixing of the BRWKV layer (main paper sec. 3): sigmoid(Linear_r(x)) * Linear_v(ReLU(Linear_k(x))^2)."""
from __future__ import annotations

import torch
from torch import nn


class SquaredReLU(torch.autograd.Function):
    """relu(k)^2 with one saved tensor and one backward product: d/dk = 2 relu(k) (0 where k <= 0).

    The same values and gradients as ``torch.relu(k).square()`` (whose backward is a pow backward and a
    threshold backward over the hidden activations); k [..., hidden].
    """

    @staticmethod
    def forward(ctx, k: torch.Tensor) -> torch.Tensor:
        r = torch.relu(k)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        return g * (2.0 * r)


class ChannelMix(nn.Module):
    """Per-token squared-ReLU FFN with a receptance gate; x [..., C] -> [..., C], hidden = ratio * C."""

    def __init__(self, dim: int, hidden_ratio: int = 2) -> None:
        super().__init__()
        hidden = int(hidden_ratio * dim)
        self.key = nn.Linear(dim, hidden, bias=False)
        self.value = nn.Linear(hidden, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():                        # same values, in place (no autograd)
            h = self.key(x).relu_()
            v = self.value(h.mul_(h))
            del h
            return self.receptance(x).sigmoid_().mul_(v)
        return torch.sigmoid(self.receptance(x)) * self.value(SquaredReLU.apply(self.key(x)))
