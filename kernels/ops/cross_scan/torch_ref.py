"""ESS cross-scan / cross-merge in PyTorch (main paper sec. 3.4): [B, C, H, W] <-> [B*K, H*W, C].

Scan orders (k index inside each image's group of K sequences):
  0: row-major (t = h*W + w), 1: column-major (t = w*H + h), 2: reversed row-major, 3: reversed column-major.
K0 uses {0}, K2 uses {0, 1}, K4 uses {0, 1, 2, 3}. ``reverse=True`` reverses every sequence in time
(the odd-block direction). Merge is the exact adjoint: the SUM over the K sequences (callers divide by K).
"""
from __future__ import annotations

import torch

SCAN_K = {"K0": 1, "K2": 2, "K4": 4}


def cross_scan_torch(x: torch.Tensor, mode: str = "K2", reverse: bool = False) -> torch.Tensor:
    """[B, C, H, W] -> [B*K, H*W, C] (ordering [B, K, T, C] flattened)."""
    B, C, H, W = x.shape
    K = SCAN_K[mode]
    row = x.flatten(2)                                           # [B, C, HW]
    seqs = [row]
    if K >= 2:
        seqs.append(x.transpose(2, 3).flatten(2))                # column-major
    if K == 4:
        seqs += [seqs[0].flip(-1), seqs[1].flip(-1)]
    if reverse:
        seqs = [s.flip(-1) for s in seqs]
    return torch.stack(seqs, 1).transpose(2, 3).reshape(B * K, H * W, C)


def cross_merge_torch(y: torch.Tensor, hw: tuple[int, int], mode: str = "K2", reverse: bool = False) -> torch.Tensor:
    """[B*K, H*W, C] -> [B, C, H, W]: sum over the K sequences of each token mapped back to its pixel."""
    H, W = hw
    K = SCAN_K[mode]
    BK, T, C = y.shape
    B = BK // K
    s = y.view(B, K, T, C).transpose(2, 3)                       # [B, K, C, T]
    if reverse:
        s = s.flip(-1)
    out = s[:, 0].reshape(B, C, H, W)
    if K >= 2:
        out = out + s[:, 1].reshape(B, C, W, H).transpose(2, 3)
    if K == 4:
        out = out + s[:, 2].flip(-1).reshape(B, C, H, W) + s[:, 3].flip(-1).reshape(B, C, W, H).transpose(2, 3)
    return out.contiguous()
