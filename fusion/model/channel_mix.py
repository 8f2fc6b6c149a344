"""Channel mixing of the BRWKV layer (main paper sec. 3): sigmoid(Linear_r(x)) * Linear_v(ReLU(Linear_k(x))^2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion.model.pointwise import EAGER
from rwkvfusion_kernels.ops import layer_norm as ln_cpu


class ChannelMix(nn.Module):
    """Per-token squared-ReLU FFN with a receptance gate; x [..., C] -> [..., C], hidden = ratio * C."""

    def __init__(self, dim: int, hidden_ratio: int = 2) -> None:
        super().__init__()
        hidden = int(hidden_ratio * dim)
        self.key = nn.Linear(dim, hidden, bias=False)
        self.value = nn.Linear(hidden, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.pw = EAGER                                        # elementwise regions (fusion.model.pointwise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():                        # same values, in place (no autograd)
            h = self.key(x).relu_()
            v = self.value(h.mul_(h))
            del h
            return self.receptance(x).sigmoid_().mul_(v)
        r = self.receptance(x)
        return self.pw.receptance_gate(r, self.value(self.pw.squared_relu(self.key(x))))

    def gated_rows(self, x: torch.Tensor, gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: (v, rg) with ``gate * self(x) == rg * v`` for rows x, gate [n, C]: one product for the key
        and receptance, their activations (times the gate) in one pass of the C kernel where it applies."""
        kr = F.linear(x, torch.cat([self.key.weight, self.receptance.weight]))     # [n, hidden + C]
        if ln_cpu.channel_act_usable(kr, gate):
            hidden, rg = ln_cpu.channel_act(kr, gate)
        else:
            hid = self.key.out_features
            hidden, rg = kr[:, :hid].relu().square_(), kr[:, hid:].sigmoid().mul_(gate)
        return self.value(hidden), rg
