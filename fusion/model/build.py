"""`build_model(task, **overrides)`: the one way to make a model (U-net or plain ablation) from the registry."""
from __future__ import annotations

from typing import Any

from torch import nn

from fusion.config import TaskConfig, get_config


def build_model(task: str | TaskConfig, **overrides: Any) -> nn.Module:
    """Model for `task` (a name in fusion.config.TASKS, or a TaskConfig), with TaskConfig field overrides.

    `arch="unet"` (default) builds `RWKVFusion`, `arch="plain"` the plain-RWKV ablation; `bands=N` sets the
    pan/hmif band count; e.g. `build_model("vif", spatial_op="attention")` is the quadratic reference model.
    The returned module carries its configuration as `model.cfg`.
    """
    if isinstance(task, TaskConfig):
        cfg = task.replace(**overrides) if overrides else task
    else:
        cfg = get_config(task, **overrides)
    if cfg.model.arch == "plain":
        from fusion.model.plain import PlainRWKV

        return PlainRWKV(cfg)
    from fusion.model.unet import RWKVFusion

    return RWKVFusion(cfg)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
