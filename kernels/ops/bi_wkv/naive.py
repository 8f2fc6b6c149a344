"""Naive O(T^2) float64 Bi-WKV (Eq. 2): the ground truth for tests."""
from __future__ import annotations

import torch


def bi_wkv_naive(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
                 max_elements: int = 1 << 23) -> torch.Tensor:
    """Eq. 2 written out literally, in float64.

    y_t = (sum_{i!=t} exp(-(|t-i|-1)/T*w + k_i) v_i + exp(u + k_t) v_t)
        / (sum_{i!=t} exp(-(|t-i|-1)/T*w + k_i)     + exp(u + k_t))

    k, v: [B, T, C]; w, u: [C]. Returns y [B, T, C] in float64. Rows are processed in blocks of
    at most ``max_elements`` pair weights so memory stays bounded; cost is O(B T^2 C).
    """
    k, v, w, u = (x.detach().to(torch.float64) for x in (k, v, w, u))
    B, T, C = k.shape
    idx = torch.arange(T, device=k.device)
    y = torch.empty_like(k)
    rows = max(1, max_elements // max(1, B * T * C))
    for t0 in range(0, T, rows):
        t = idx[t0:t0 + rows]
        dist = (t[:, None] - idx[None, :]).abs().to(torch.float64)            # [tb, T]
        log_w = -(dist[..., None] - 1.0) / T * w                               # [tb, T, C]
        diag = t[:, None] == idx[None, :]
        log_w = torch.where(diag[..., None], u.expand_as(log_w), log_w)        # bonus u on i == t
        logits = log_w[None] + k[:, None, :, :]                                # [B, tb, T, C]
        logits = logits - logits.amax(dim=2, keepdim=True)                     # exact rescaling
        p = logits.exp()
        y[:, t0:t0 + rows] = (p * v[:, None]).sum(2) / p.sum(2)
    return y
