"""Input checking and preparation shared by the U-net and the plain model: shapes, masks, text, padding."""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fusion.config import TaskConfig
from fusion.model.layers import channels_last, pad_to_multiple


@dataclass
class ModelInputs:
    a: torch.Tensor                 # [B, Ca, Hp, Wp] padded
    b: torch.Tensor                 # [B, Cb, Hp, Wp] padded
    text: torch.Tensor | None       # [B, L, text_hidden] projected tokens (None when the model has no text)
    text_mask: torch.Tensor | None  # [B, L] bool or None (all real)
    mask: torch.Tensor | None       # [B, mask_in_channels, Hp, Wp] float (one-hot for "onehot"); None = all-zero
    hw: tuple[int, int]             # original size, for cropping back


def mask_to_channels(mask: torch.Tensor, cfg: TaskConfig, batch: int, hw: tuple[int, int],
                     dtype: torch.dtype) -> torch.Tensor:
    """Mask argument -> float [B, mask_in_channels, H, W].

    Float [B, Cm, H, W] with Cm = cfg.guidance.mask_in_channels is used as is. An integer class map [B, H, W]
    (or [B, 1, H, W]) is one-hot encoded for "onehot" masks: class id c in 1..cfg.guidance.mask_classes sets
    channel c - 1 and background (0) sets none, so every vocabulary class keeps its own channel; binarised (> 0) for "binary".
    """
    want = cfg.guidance.mask_in_channels
    if mask.ndim == 4 and mask.is_floating_point():
        if mask.shape[0] != batch or mask.shape[1] != want or tuple(mask.shape[-2:]) != hw:
            raise ValueError(f"mask: expected float [B={batch}, {want}, {hw[0]}, {hw[1]}] for task "
                             f"{cfg.task!r} ({cfg.guidance.mask_kind}), got {tuple(mask.shape)}")
        return mask.to(dtype)
    if mask.is_floating_point() or mask.dtype == torch.bool:
        if mask.dtype == torch.bool and cfg.guidance.mask_kind == "binary" and mask.ndim in (3, 4):
            mask = mask.long()
        else:
            raise ValueError(f"mask: a [B, H, W] map must be an integer class map, got {mask.dtype} "
                             f"{tuple(mask.shape)}")
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.ndim != 3 or mask.shape[0] != batch or tuple(mask.shape[-2:]) != hw:
        raise ValueError(f"mask: expected a class map [B={batch}, {hw[0]}, {hw[1]}], got {tuple(mask.shape)}")
    if cfg.guidance.mask_kind == "binary":
        return (mask > 0).to(dtype)[:, None]
    if cfg.guidance.mask_kind == "onehot":
        lo, hi = int(mask.min()), int(mask.max())
        if lo < 0 or hi > cfg.guidance.mask_classes:
            raise ValueError(f"mask: class ids must lie in [0, {cfg.guidance.mask_classes}] (0 = background, "
                             f"1..cfg.guidance.mask_classes), got range [{lo}, {hi}]")
        return F.one_hot(mask.long(), cfg.guidance.mask_classes + 1)[..., 1:].permute(0, 3, 1, 2).to(dtype)
    raise ValueError(f"mask: task {cfg.task!r} takes a float mask [B, {want}, H, W], not a class map")


def prepare_inputs(model: nn.Module, a: torch.Tensor, b: torch.Tensor, text: torch.Tensor | None,
                   text_mask: torch.Tensor | None, mask: torch.Tensor | None) -> ModelInputs:
    """Check the forward arguments against `model.cfg` and pad the images to the model's multiple."""
    cfg: TaskConfig = model.cfg
    for name, t, ch in (("a", a, cfg.model.a_channels), ("b", b, cfg.model.b_channels)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or not t.is_floating_point():
            raise ValueError(f"{name}: expected a float tensor [B, {ch}, H, W], got "
                             f"{getattr(t, 'dtype', type(t))} {tuple(getattr(t, 'shape', ()))}")
        if t.shape[1] != ch:
            hint = " (build with bands=N for another band count)" if cfg.task in ("pan", "hmif") and name == "a" else ""
            raise ValueError(f"{name}: task {cfg.task!r} expects {ch} channels (cfg.{name}_channels), "
                             f"got {t.shape[1]}{hint}")
    if a.shape[0] != b.shape[0] or a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"a and b must share batch and size, got {tuple(a.shape)} and {tuple(b.shape)}")
    bsz, hw = a.shape[0], (int(a.shape[-2]), int(a.shape[-1]))
    b = b.to(a.dtype)
    m = None            # an absent mask is the all-zero mask: the mask branches take None as that (no zero tensor)
    if cfg.guidance.mask_kind != "none":
        m = mask_to_channels(mask, cfg, bsz, hw, a.dtype) if mask is not None else None
    elif mask is not None:
        raise ValueError(f"mask: task {cfg.task!r} has no mask branch (cfg.guidance.mask_kind='none'); pass mask=None")
    t, tm = None, None
    if model.text_proj is not None:
        t, tm = model.text_proj(text, text_mask, bsz, a.device, a.dtype)
    elif text is not None:
        raise ValueError("text: this model was built with use_text=False; pass text=None")
    mult = cfg.model.total_downsample
    a_p, b_p = pad_to_multiple(a, mult), pad_to_multiple(b, mult)
    m = pad_to_multiple(m, mult, mode="replicate") if m is not None else None
    return ModelInputs(a_p, b_p, t, tm, m, hw)


def to_channels_last(inp: ModelInputs) -> ModelInputs:
    """The image inputs in channels-last memory (same values and shapes).

    1-channel images get explicit channels-last strides (``fusion.model.layers.channels_last``). Convolutions
    propagate the format, so every [B, C, H, W] activation of the network is then stored as
    [B, H, W, C]: the token view ``x.permute(0, 2, 3, 1)`` used by the LayerNorms, the BRWKV layers and the
    scans is contiguous, and no layer transposes between NCHW and token order.
    """
    return dataclasses.replace(inp, a=channels_last(inp.a), b=channels_last(inp.b),
                               mask=None if inp.mask is None else channels_last(inp.mask))


def apply_output_clamp(y: torch.Tensor, mode: str, training: bool) -> torch.Tensor:
    """Clamp to [0, 1]: 'ste' passes gradients straight through in training; 'hard' clamps; 'none' keeps y."""
    if mode == "none":
        return y
    if mode == "ste" and training:
        return y + (y.clamp(0.0, 1.0) - y).detach()
    return y.clamp(0.0, 1.0)


class FusionNet(nn.Module, abc.ABC):
    """Shared forward of the fusion models: ``(a, b, text, text_mask, mask) -> out``, see ``prepare_inputs``.

    Subclasses implement ``_forward(inp)``: padded inputs in, output cropped back to ``inp.hw``; the result
    is clamped per ``cfg.model.output_clamp``.
    """

    cfg: TaskConfig

    def forward(self, a: torch.Tensor, b: torch.Tensor, text: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        inp = prepare_inputs(self, a, b, text, text_mask, mask)
        return apply_output_clamp(self._forward(inp), self.cfg.model.output_clamp, self.training)

    def condition_source(self, inp: ModelInputs) -> torch.Tensor:
        """The source of the conditioning feature: the second image (or both images, concatenated)."""
        return inp.b if self.cfg.model.cond_source == "b" else torch.cat([inp.a, inp.b], dim=1)

    def condition(self, inp: ModelInputs) -> torch.Tensor:
        """Conditioning feature of the MFM (main paper sec. 3): Conv1x1 of the second source (or of both sources)."""
        return self.cond_embed(self.condition_source(inp))

    @abc.abstractmethod
    def _forward(self, inp: ModelInputs) -> torch.Tensor:
        """Padded inputs -> output [B, out_channels, *inp.hw]."""
