"""Seeded "trained-like" models and fixed inputs whose outputs were saved with the pre-optimisation code.

``tests/data/seeded_outputs.safetensors`` holds the forward outputs of these models computed by the original
(unoptimised) implementation; ``test_speed_equivalence.py`` checks that the current code reproduces them.
Regenerate ONLY with a known-good implementation: ``python -m tests.speed_fixture``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

FIXTURE = Path(__file__).resolve().parent / "data" / "seeded_outputs.safetensors"
CASES = ("vif", "mef", "pan")


def seeded_model(task: str) -> nn.Module:
    """Model of ``task`` with every parameter perturbed by seeded noise (lambda, decay, bonus non-trivial)."""
    from fusion import build_model

    torch.manual_seed(0)
    kw: dict = dict(bands=4) if task == "pan" else {}
    kw["output_clamp"] = "none"            # compare the raw output, not a clamped one
    model = build_model(task, **kw)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith(".lam"):
                p.copy_(0.5 * noise)
            else:
                p.add_(0.05 * noise)
    return model.eval()


def case_inputs(task: str, with_guidance: bool) -> dict:
    """Fixed inputs at an odd size (padding path); text and mask when ``with_guidance``."""
    model_cfg = seeded_model(task).cfg
    g = torch.Generator().manual_seed(2)
    H, W = 37, 50
    kw: dict = dict(a=torch.rand(1, model_cfg.model.a_channels, H, W, generator=g),
                    b=torch.rand(1, model_cfg.model.b_channels, H, W, generator=g))
    if with_guidance and model_cfg.guidance.use_text:
        kw["text"] = torch.randn(1, 5, model_cfg.guidance.text_dim, generator=g)
        kw["text_mask"] = torch.tensor([[True, True, True, True, False]])
    if with_guidance and model_cfg.guidance.mask_kind != "none":
        if model_cfg.guidance.mask_kind == "onehot":  # the one-hot channels themselves (as the fixture's code encoded them)
            ids = torch.randint(0, model_cfg.guidance.mask_classes, (1, H, W), generator=g)
            kw["mask"] = torch.nn.functional.one_hot(ids, model_cfg.guidance.mask_classes).permute(0, 3, 1, 2).float()
        else:
            kw["mask"] = (torch.rand(1, model_cfg.guidance.mask_channels, H, W, generator=g) > 0.5).float()
    return kw


def compute_outputs() -> dict[str, torch.Tensor]:
    out = {}
    for task in CASES:
        model = seeded_model(task)
        for guided in (False, True):
            with torch.no_grad():
                out[f"{task}-{'guided' if guided else 'plain'}"] = model(**case_inputs(task, guided)).clone()
    return out


if __name__ == "__main__":
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in compute_outputs().items()}, FIXTURE)
    print(f"wrote {FIXTURE}")


def without_drop_path(model: nn.Module) -> nn.Module:
    """No stochastic depth (in place), so two copies of a model in training mode compute the same network."""
    for m in model.modules():
        if hasattr(m, "p") and isinstance(m.p, float):
            m.p = 0.0
    return model


def assert_same_gradients(model: nn.Module, ref: nn.Module, rtol: float = 1e-4) -> None:
    """Every parameter gradient of ``model`` within ``rtol`` (of its largest value) of ``ref``'s."""
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        if p.grad is None:
            assert q.grad is None, name
            continue
        scale = float(q.grad.abs().max()) or 1.0
        assert float((p.grad - q.grad).abs().max()) <= rtol * scale + 1e-7, name


def tno_pair(shared_data: Path, index: int, crop: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``index``-th TNO test pair (``rwkvfusion_io.layouts.fusion_pairs``) as [1, 1, H, W] luma in [0, 1],
    top-left ``crop`` (None: whole); skips the calling test when the shared TNO set is absent."""
    import pytest

    from rwkvfusion_io.images import read_luma
    from rwkvfusion_io.layouts import fusion_pairs

    tno = [g for g in fusion_pairs("vif", shared_data) if g[0][0].startswith("tno/")]
    if not tno or len(tno[0]) <= index:
        pytest.skip(f"TNO test pairs absent under {shared_data}")
    _, a, b = tno[0][index]
    h, w = crop if crop is not None else (None, None)
    return tuple(torch.from_numpy(read_luma(p)[:h, :w]).float()[None, None] for p in (a, b))
