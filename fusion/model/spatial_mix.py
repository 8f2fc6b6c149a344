"""Spatial mixing: Bi-WKV (Eq. 2) over ESS scans of the image, optionally joined with text tokens.

Gate variant: by default the normalised WKV output is gated with `SiLU(Linear(x))` (`gate="silu"`, as the
authors' code does); the paper describes the receptance form `sigmoid(Linear(x)) * wkv` (`gate="receptance"`).
Both are `Linear_out(LayerNorm(wkv) * gate)`. No token shift.

Efficiency note: the key/value/gate projections are per token, so they are computed once per pixel before
scanning (identical to projecting each of the K scanned copies), and the output projection is applied once
after the K scans are merged (it is linear, so `Linear(mean_k(.)) == mean_k(Linear(.))`). The LayerNorm on
the WKV output is applied per scan, before merging.

Fast path (CPU kernel, image only): the Bi-WKV weights depend on |t - i| only, so a reversed scan gives the
reversed output of the forward scan, and the output of each scan is mapped back to its pixels: the row-major
scan of a channels-last [B, H, W, C] tensor is the tensor itself, the column-major one its (1, 2) transpose.
Both are read in place by the kernel (no cross-scan copies), their LayerNorm'd outputs summed in pixel order
and divided by K, which equals cross_merge of the K scans up to float32 rounding. ``fast=False`` on a module
keeps the literal scan/merge formulation (the reference the tests compare with).

`op="attention"` replaces the WKV by softmax attention (`scaled_dot_product_attention`, extra query
projection) over exactly the same scanned token sequences: the quadratic reference model of the benchmark.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion.model.layers import layer_norm
from fusion.model.pointwise import EAGER
from rwkvfusion_kernels import SCAN_K, bi_wkv, cross_merge, cross_scan
from rwkvfusion_kernels.ops import layer_norm as ln_cpu
from rwkvfusion_kernels.ops.bi_wkv import WKV_FLOPS_PER_ELEMENT, resolve_impl

# key value given to padded text tokens so exp(k) underflows to 0: they take no part in the WKV sums
# (the sequence length T in Eq. 2's decay still counts them, so batch padding slightly changes the decay).
MASKED_KEY = -1.0e4

__all__ = ["SpatialMix", "init_decay_bonus", "MASKED_KEY", "WKV_FLOPS_PER_ELEMENT"]


def init_decay_bonus(dim: int, layer_id: int, n_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial Bi-WKV decay w and bonus u (main paper sec. 3), guarded for n_layers = 1 and dim = 1.

    w_n = -0.3 + (n/(C-1))^(0.1 + 1.3*l/(L-1));  u_n = (l/(L-1)) * (1 - n/(C-1)) + 0.1*((n+1) % 3 - 1).
    """
    ratio_l = layer_id / (n_layers - 1) if n_layers > 1 else 0.0
    n = torch.arange(dim, dtype=torch.float64)
    ratio_n = n / (dim - 1) if dim > 1 else torch.zeros_like(n)
    w = -0.3 + ratio_n ** (0.1 + 1.3 * ratio_l)
    u = ratio_l * (1.0 - ratio_n) + 0.1 * (((n + 1) % 3) - 1)
    return w.float(), u.float()


class SpatialMix(nn.Module):
    """Bi-WKV spatial mix over the ESS scans of an image [B, H, W, C] (+ optional text tokens [B, L, C])."""

    def __init__(self, dim: int, layer_id: int = 0, n_layers: int = 1, *, op: str = "bi_wkv",
                 gate: str = "silu", scan_mode: str = "K2", wkv_impl: str | None = None,
                 head_dim: int = 32) -> None:
        super().__init__()
        if op not in ("bi_wkv", "attention"):
            raise ValueError(f"SpatialMix: op={op!r} not in ('bi_wkv', 'attention')")
        if gate not in ("silu", "receptance"):
            raise ValueError(f"SpatialMix: gate={gate!r} not in ('silu', 'receptance')")
        if scan_mode not in SCAN_K:
            raise ValueError(f"SpatialMix: scan_mode={scan_mode!r} not in {sorted(SCAN_K)}")
        self.dim, self.op, self.gate_kind, self.scan_mode, self.wkv_impl = dim, op, gate, scan_mode, wkv_impl
        self.K = SCAN_K[scan_mode]
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.gate = nn.Linear(dim, dim, bias=False)
        if op == "attention":
            self.query = nn.Linear(dim, dim, bias=False)
            self.n_heads = dim // head_dim if dim % head_dim == 0 and dim >= head_dim else 1
        else:
            w, u = init_decay_bonus(dim, layer_id, n_layers)
            self.decay = nn.Parameter(w)
            self.bonus = nn.Parameter(u)
        self.ln_out = nn.LayerNorm(dim)
        self.output = nn.Linear(dim, dim, bias=False)
        self.fast = True  # in-place scans through the CPU kernel when it applies (see the module docstring)
        self.pw = EAGER   # elementwise regions (fusion.model.pointwise)

    # ------------------------------------------------------------------ core operator
    def _mix(self, k: torch.Tensor, v: torch.Tensor, q: torch.Tensor | None,
             key_mask: torch.Tensor | None) -> torch.Tensor:
        """[N, T, C] sequences -> [N, T, C] (Bi-WKV, or SDPA when op='attention')."""
        if self.op == "bi_wkv":
            if key_mask is not None:
                k = k.masked_fill(~key_mask[..., None], MASKED_KEY)
            # the operator manages its own precision (bf16/fp16 in, fp32 accumulation): keep autocast out of it
            with torch.autocast(device_type=k.device.type, enabled=False):
                return bi_wkv(k, v, self.decay, self.bonus, impl=self.wkv_impl, validate=False)
        n, t, c = k.shape
        h = self.n_heads
        split = lambda z: z.view(n, t, h, c // h).transpose(1, 2)  # noqa: E731
        attn_mask = key_mask[:, None, None, :] if key_mask is not None else None
        y = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=attn_mask)
        return y.transpose(1, 2).reshape(n, t, c)

    def _scan(self, z: torch.Tensor, reverse: bool) -> torch.Tensor:
        """[B, H, W, C] -> [B*K, H*W, C]."""
        return cross_scan(z.permute(0, 3, 1, 2).contiguous(), mode=self.scan_mode, reverse=reverse)

    def forward(self, x: torch.Tensor, *, reverse: bool = False, text: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None, text_first: bool = False,
                need_text: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, H, W, C] -> (y [B, H, W, C], text output [B, L, C] or None).

        With `text` [B, L, C], ONE mix runs over each scan's [image; text] sequence (text first when
        `text_first`); text tokens are repeated for every scan and their outputs averaged over the scans.
        `text_mask` [B, L] (True = real token) excludes padded tokens.
        """
        bsz, h, w, c = x.shape
        K, T = self.K, h * w
        if text is None and self.op == "bi_wkv" and self.fast and resolve_impl(x, self.wkv_impl) == "cpu":
            return self._forward_in_place(x), None
        ks, vs = self._scan(self.key(x), reverse), self._scan(self.value(x), reverse)
        qs = self._scan(self.query(x), reverse) if self.op == "attention" else None
        key_mask = None
        L = 0
        if text is not None:
            L = text.shape[1]
            rep = lambda z: z.repeat_interleave(K, dim=0)  # noqa: E731  [B, L, C] -> [B*K, L, C]
            kt, vt = rep(self.key(text)), rep(self.value(text))
            qt = rep(self.query(text)) if qs is not None else None
            cat = (lambda im, tx: torch.cat([tx, im], 1)) if text_first else (lambda im, tx: torch.cat([im, tx], 1))
            ks, vs = cat(ks, kt), cat(vs, vt)
            qs = cat(qs, qt) if qs is not None else None
            if text_mask is not None:
                img_ok = torch.ones(bsz * K, T, dtype=torch.bool, device=x.device)
                key_mask = cat(img_ok, rep(text_mask.to(torch.bool)))
        y = self.ln_out(self._mix(ks, vs, qs, key_mask))
        y_img, y_txt = (y[:, L:], y[:, :L]) if text_first else (y[:, :T], y[:, T:])
        y_img = cross_merge(y_img.contiguous(), hw=(h, w), mode=self.scan_mode, reverse=reverse) / K
        y_img = self.output(y_img.permute(0, 2, 3, 1) * self._gate(x))
        if text is None or not need_text:
            return y_img, None
        y_txt = y_txt.reshape(bsz, K, L, c).mean(dim=1)
        return y_img, self.output(y_txt * self._gate(text))

    def _forward_in_place(self, x: torch.Tensor) -> torch.Tensor:
        """Image-only Bi-WKV mix without scan copies: x [B, H, W, C] -> [B, H, W, C] (see the module docstring)."""
        x = x.contiguous()
        k, v = self.key(x), self.value(x)
        if k.dtype in (torch.bfloat16, torch.float16) and not torch.is_grad_enabled():
            k, v = k.float(), v.float()     # autocast inference: convert once (contiguous) for both scans
        y = self._wkv(k, v)                                                                     # row-major
        yc = self._wkv(k.transpose(1, 2), v.transpose(1, 2)) if self.K >= 2 else None           # column-major
        del k, v
        g = None
        if yc is not None and not torch.is_grad_enabled():
            g = self.gate(x)
            merged = self._merge_in_one_pass(y, yc, g)
            if merged is not None:
                return self.output(merged.view(x.shape))
        y = layer_norm(y, self.ln_out, inplace=True)             # the C kernel (in place) in CPU inference
        if yc is not None:
            yc = layer_norm(yc.transpose(1, 2), self.ln_out, inplace=True)
            if torch.is_grad_enabled():   # merge and gate in one elementwise region
                return self.output(self.pw.merge_gate(y, yc, self.gate(x), self.merge_scale,
                                                      self.gate_kind == "silu"))
            y = y.add_(yc) if y.dtype == yc.dtype else y + yc
            del yc
        y = (y * self.merge_scale).to(x.dtype)
        g = self._act(g if g is not None else self.gate(x))
        return self.output(y.mul_(g) if not torch.is_grad_enabled() else y * g)

    def _merge_in_one_pass(self, y: torch.Tensor, yc: torch.Tensor, g: torch.Tensor) -> torch.Tensor | None:
        """Inference: ``(LN(y) + LN(yc)) * merge_scale * act(g)`` as [N, C] rows through the
        fused C kernel (LayerNorms, merge and gate in one pass), or None where it does not apply; y the row-major
        scan's output, yc the column-major one's [B, W, H, C] (its (1, 2) transpose is in pixel order), g the
        gate's pre-activation [B, H, W, C]."""
        C = y.shape[-1]
        rows = [y.reshape(-1, C), yc.transpose(1, 2).reshape(-1, C), g.reshape(-1, C)]
        if not ln_cpu.merge_usable(*rows, self.ln_out.weight, self.ln_out.bias):
            return None
        return ln_cpu.merge_gate(*rows, self.ln_out.weight, self.ln_out.bias, self.ln_out.eps, self.merge_scale,
                                 self.gate_kind == "silu")

    @property
    def merge_scale(self) -> float:
        """Factor of the in-place scans' sum: 1/K, times 2 for K = 4, whose reversed scans repeat the row and
        column outputs (|t - i| symmetry); a power of two, so scaling is exact."""
        return (2.0 if self.K == 4 else 1.0) / self.K

    def _wkv(self, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Bi-WKV of [B, T1, T2, C] views through the CPU kernel (it manages its own precision: autocast off).

        In autocast inference k and v arrive as float32 (converted once in ``_forward_in_place``), so the
        outputs stay float32 through the LayerNorms; the mix is cast to the activation dtype after the merge.
        """
        with torch.autocast(device_type=k.device.type, enabled=False):
            return bi_wkv(k, v, self.decay, self.bonus, impl="cpu", validate=False)

    def _gate(self, z: torch.Tensor) -> torch.Tensor:
        return self._act(self.gate(z))

    def _act(self, g: torch.Tensor) -> torch.Tensor:
        return F.silu(g) if self.gate_kind == "silu" else torch.sigmoid(g)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, op={self.op}, gate={self.gate_kind}, scan={self.scan_mode}"

