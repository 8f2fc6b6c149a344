"""FLOP counting: `torch.utils.flop_counter` for convs/matmuls/SDPA plus the Bi-WKV counted analytically.

The Bi-WKV runs as the custom op ``rwkvfusion::bi_wkv_fwd``, opaque to the flop counter, which counts it by
the registered formula: `WKV_FLOPS_PER_ELEMENT` (16) FLOPs per output element (token x channel), forward
only. The count is taken on the CPU with that op (the model is copied there when it lives elsewhere), so it
does not depend on the device's WKV implementation; nothing global is switched while counting. FLOPs follow
the flop counter's convention (one multiply-add = 2 FLOPs); tools such as fvcore report multiply-adds, i.e.
half.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from rwkvfusion_kernels.ops.bi_wkv import cpu as wkv_cpu


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # the CPU flash-attention kernel has no formula in torch.utils.flop_counter (only the math and CUDA ones)
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}


def example_inputs(model: nn.Module, h: int, w: int, *, batch: int = 1, text_len: int | None = None,
                   with_mask: bool = True, seed: int = 0) -> dict:
    """Random forward arguments for `model` at h x w (text only when text_len is given)."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    kw: dict = dict(a=torch.rand(batch, cfg.model.a_channels, h, w, generator=g).to(dev),
                    b=torch.rand(batch, cfg.model.b_channels, h, w, generator=g).to(dev))
    if text_len and cfg.guidance.use_text:
        kw["text"] = torch.randn(batch, text_len, cfg.guidance.text_dim, generator=g).to(dev)
    if with_mask and cfg.guidance.mask_kind != "none":
        if cfg.guidance.mask_kind == "onehot":
            kw["mask"] = torch.randint(0, cfg.guidance.mask_classes, (batch, h, w), generator=g).to(dev)
        else:
            kw["mask"] = (torch.rand(batch, cfg.guidance.mask_channels, h, w, generator=g) > 0.5).float().to(dev)
    return kw


def count_flops(model: nn.Module, h: int = 256, w: int = 256, *, batch: int = 1, text_len: int | None = None,
                with_mask: bool = True, breakdown: bool = False) -> int | tuple[int, dict[str, int]]:
    """Forward FLOPs of `model` on a batch of h x w inputs (eval mode, no grad).

    text_len=None runs without text (the null text token); give e.g. 512 for full captions.
    With breakdown=True returns (total, {"counted": flop-counter FLOPs, "wkv": analytic Bi-WKV FLOPs}).
    """
    if not wkv_cpu.available():
        raise RuntimeError("count_flops needs the CPU Bi-WKV kernel (a C compiler); see rwkvfusion_kernels.ops.bi_wkv.cpu")
    if next(model.parameters()).device.type != "cpu":
        import copy

        model = copy.deepcopy(model).cpu()
    kw = example_inputs(model, h, w, batch=batch, text_len=text_len, with_mask=with_mask)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as fc:
            model(**kw)
    finally:
        model.train(was_training)
    total = int(fc.get_total_flops())
    wkv = int(sum(n for op, n in fc.get_flop_counts().get("Global", {}).items() if "bi_wkv" in str(op)))
    counted = total - wkv
    if breakdown:
        return counted + wkv, {"counted": counted, "wkv": wkv}
    return counted + wkv
