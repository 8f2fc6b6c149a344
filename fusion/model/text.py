"""Model-level text preprocessing (main paper sec. 3.5): normalise, Linear(d->64), Linear(64->64), + sin-cos PE.

Absent text (`text=None`) and dropped text (training, probability `text_drop`, the whole batch at once) both
become the *null text*: one all-zero token, i.e. just the position-0 embedding. The output then does not
depend on the text argument, and every text parameter stays in the graph (DDP-friendly).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def sincos_1d(dim: int, n_positions: int) -> torch.Tensor:
    """Fixed 1-D sin-cos position embedding [n_positions, dim] (MAE convention: sin half then cos half)."""
    if dim % 2:
        raise ValueError(f"sincos_1d: dim must be even, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.arange(n_positions, dtype=np.float64)[:, None] * omega[None]
    return torch.from_numpy(np.concatenate([np.sin(out), np.cos(out)], axis=1)).float()


class TextProjector(nn.Module):
    """text [B, L, D] (+ text_mask [B, L] bool) -> (tokens [B, L', hidden], mask [B, L'])."""

    def __init__(self, text_dim: int, hidden: int = 64, max_len: int = 512, drop: float = 0.0) -> None:
        super().__init__()
        self.text_dim, self.max_len, self.drop = text_dim, max_len, float(drop)
        self.proj = nn.Sequential(nn.Linear(text_dim, hidden, bias=False), nn.Linear(hidden, hidden, bias=False))
        self.register_buffer("pos", sincos_1d(hidden, max_len), persistent=False)

    def null_text(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros(batch, 1, self.text_dim, device=device, dtype=dtype)

    def forward(self, text: torch.Tensor | None, text_mask: torch.Tensor | None, batch: int,
                device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        dropped = self.training and self.drop > 0 and bool(torch.rand(()) < self.drop)
        if text is None or dropped:
            text, text_mask = self.null_text(batch, device, dtype), None
        else:
            text, text_mask = self.check(text, text_mask, batch)
            text = text.to(device=device, dtype=dtype)
        x = F.normalize(text, p=2, dim=-1)           # each token to unit L2 norm over its channels
        x = self.proj(x) + self.pos[: x.shape[1]].to(x.dtype)
        if text_mask is not None:
            text_mask = text_mask.to(device=device, dtype=torch.bool)
            if bool(text_mask.all()):
                text_mask = None
        return x, text_mask

    def check(self, text: torch.Tensor, text_mask: torch.Tensor | None,
              batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if text.ndim != 3 or text.shape[0] != batch or text.shape[2] != self.text_dim:
            raise ValueError(f"text: expected [B={batch}, L, D={self.text_dim}], got {tuple(text.shape)}")
        if not text.is_floating_point():
            raise ValueError(f"text: expected a float tensor, got {text.dtype}")
        L = text.shape[1]
        if L < 1 or L > self.max_len:
            raise ValueError(f"text: length L={L} not in [1, {self.max_len}] (text_max_len)")
        if text_mask is not None:
            if tuple(text_mask.shape) != (batch, L):
                raise ValueError(f"text_mask: expected shape {(batch, L)}, got {tuple(text_mask.shape)}")
            if text_mask.dtype != torch.bool:
                raise ValueError(f"text_mask: expected a bool tensor (True = real token), got {text_mask.dtype}")
            if not bool(text_mask.any(dim=1).all()):
                # a sample without any real token: give it the null text instead of an empty sequence
                empty = ~text_mask.any(dim=1)
                text = text.clone()
                text[empty] = 0
                text_mask = text_mask.clone()
                text_mask[empty, 0] = True
        return text, text_mask
