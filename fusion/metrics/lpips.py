"""LPIPS (Zhang et al. 2018) from LOCAL backbone weights only; nothing is downloaded.

Backbone weights: a torchvision-format state dict (``features.<i>.weight/bias``) for ``alex`` (AlexNet) or
``vgg`` (VGG16), loaded with ``torch.load``. Linear calibration weights (optional): the ``lpips`` package's
``weights/v0.1/<net>.pth`` (``lin<k>.model.1.weight``). Without them every channel weighs 1 (the paper's
uncalibrated "baseline" variant), which is stated in :data:`LPIPS_SKIP_MESSAGE`-style notes by callers.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

LPIPS_SKIP_MESSAGE = ("LPIPS skipped: no backbone weights given (pass a local torchvision-format AlexNet/VGG16 "
                      "state dict, e.g. --lpips-weights alexnet.pth); weights are never downloaded")

# (conv channel plan, slice boundaries in the torchvision ``features`` Sequential)
_ALEX = dict(layers=[("conv", 3, 64, 11, 4, 2), ("relu",), ("pool",), ("conv", 64, 192, 5, 1, 2), ("relu",),
                     ("pool",), ("conv", 192, 384, 3, 1, 1), ("relu",), ("conv", 384, 256, 3, 1, 1), ("relu",),
                     ("conv", 256, 256, 3, 1, 1), ("relu",)],
             cuts=[2, 5, 8, 10, 12], channels=[64, 192, 384, 256, 256])
_VGG_PLAN = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]


def _vgg_layers():
    layers, cin = [], 3
    for v in _VGG_PLAN:
        if v == "M":
            layers.append(("pool2",))
        else:
            layers += [("conv", cin, v, 3, 1, 1), ("relu",)]
            cin = v
    return layers


_VGG = dict(layers=_vgg_layers(), cuts=[4, 9, 16, 23, 30], channels=[64, 128, 256, 512, 512])


@functools.lru_cache(maxsize=4)
def _load(weights: str, net: str, lin: str | None):
    import torch
    from torch import nn

    spec = {"alex": _ALEX, "vgg": _VGG}.get(net)
    if spec is None:
        raise ValueError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
    mods = []
    for layer in spec["layers"]:
        if layer[0] == "conv":
            _, cin, cout, k, s, p = layer
            mods.append(nn.Conv2d(cin, cout, k, s, p))
        elif layer[0] == "relu":
            mods.append(nn.ReLU(inplace=False))
        elif layer[0] == "pool":
            mods.append(nn.MaxPool2d(3, 2))
        else:
            mods.append(nn.MaxPool2d(2, 2))
    features = nn.Sequential(*mods)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS backbone weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")} or state
    features.load_state_dict(state)
    lin_w = None
    if lin is not None:
        lstate = torch.load(Path(lin), map_location="cpu", weights_only=True)
        lin_w = [lstate[f"lin{i}.model.1.weight"].reshape(-1) for i in range(5)]
    return features.eval(), spec["cuts"], lin_w


def lpips_distance(x: np.ndarray, y: np.ndarray, weights: str | Path, *, net: str = "alex",
                   lin_weights: str | Path | None = None) -> float:
    """LPIPS(x, y) for HxW or HxWx3 images on 0..255: inputs scaled to [-1, 1], the LPIPS scaling layer,
    unit-normalised channel features at the 5 ReLU stages, squared differences weighted by the linear
    calibration (or 1), spatially averaged and summed over stages."""
    import torch

    features, cuts, lin_w = _load(str(weights), net, None if lin_weights is None else str(lin_weights))
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def prep(z):
        t = torch.as_tensor(np.asarray(z, dtype=np.float32))
        t = t[..., None].expand(*t.shape, 3) if t.ndim == 2 else t
        t = t.permute(2, 0, 1)[None] / 127.5 - 1.0
        return (t - shift) / scale

    with torch.no_grad():
        hx, hy, total, start = prep(x), prep(y), 0.0, 0
        for i, cut in enumerate(cuts):
            for mod in features[start:cut]:
                hx, hy = mod(hx), mod(hy)
            start = cut
            nx = hx / (hx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = hy / (hy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = (nx - ny).pow(2)
            w = lin_w[i].view(1, -1, 1, 1) if lin_w is not None else 1.0
            total += float((d * w).sum(1).mean())
    return total
