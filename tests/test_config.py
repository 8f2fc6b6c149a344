"""The task registry (Table 1): typed frozen sections, flat override routing, serialisation, recipes."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from fusion.config import (
    FIELD_SECTION,
    SECTIONS,
    TASKS,
    DataConfig,
    GuidanceConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TaskConfig,
    get_config,
    get_recipe,
)
from fusion.losses import FusionLoss, PanLoss, build_loss

# the flat config of the session-2 bundled MIF model's sidecar (the checkpoint form written before the sections)
MIF_JSON = Path(__file__).resolve().parent / "data" / "flat_config_mif.json"


def test_sections_are_typed_and_frozen():
    cfg = get_config("vif")
    kinds = {"model": ModelConfig, "data": DataConfig, "loss": LossConfig, "optim": OptimConfig,
             "guidance": GuidanceConfig}
    assert {k: type(getattr(cfg, k)) for k in kinds} == kinds == SECTIONS
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.loss.eta = (1.0, 1.0, 1.0)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model = ModelConfig()  # type: ignore[misc]
    with pytest.raises(TypeError, match="LossConfig"):
        TaskConfig(task="vif", loss={"eta": (1, 2, 3)})  # type: ignore[arg-type]
    assert not hasattr(cfg, "extra") and not hasattr(cfg, "crop_size")  # no flat copies


def test_every_flat_name_lives_in_one_section():
    counts: dict[str, int] = {}
    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            counts[f.name] = counts.get(f.name, 0) + 1
    assert max(counts.values()) == 1 and set(counts) == set(FIELD_SECTION)


def test_flat_overrides_route_to_their_sections():
    cfg = get_config("mif", crop_size=(64, 64), bands=4, eta=(1, 2, 3), lr=5e-4, text_drop=0.5,
                     ssim_weighting="pixel", text_source="b")
    assert cfg.data.crop_size == (64, 64) and cfg.data.text_source == "b"
    assert cfg.model.a_channels == cfg.model.out_channels == 4
    assert cfg.loss.eta == (1, 2, 3) and cfg.loss.ssim_weighting == "pixel"
    assert cfg.optim.lr == 5e-4 and cfg.guidance.text_drop == 0.5
    base = get_config("mif")  # untouched fields keep the registry's values
    assert cfg.model.drop_path == base.model.drop_path and cfg.optim.epochs == base.optim.epochs
    # section-qualified overrides, as dicts or section objects
    assert get_config("mif", loss={"eta": (1, 2, 3)}).loss == dataclasses.replace(base.loss, eta=(1, 2, 3))
    assert get_config("mif", optim=OptimConfig(lr=0.1)).optim == OptimConfig(lr=0.1)
    assert base.replace(gt_weight=1.0).loss.gt_weight == 1.0 and base.loss.gt_weight == 5.0


def test_unknown_override_is_named():
    with pytest.raises(ValueError, match="'not_a_field'"):
        get_config("vif", not_a_field=1)
    with pytest.raises(ValueError, match="'crop_size'"):
        get_config("vif", loss={"crop_size": (8, 8)})  # a real field, but of another section
    with pytest.raises(ValueError, match="'extra'"):
        get_config("vif", extra={"text_source": "b"})


def test_validation_lives_in_the_sections():
    with pytest.raises(ValueError, match="ModelConfig.enc_layers"):
        get_config("vif", enc_layers=(1, 1, 1))
    with pytest.raises(ValueError, match="GuidanceConfig.mask_classes"):
        get_config("mef", mask_classes=1)
    with pytest.raises(ValueError, match="DataConfig.val_fraction"):
        get_config("vif", val_fraction=1.0)
    with pytest.raises(ValueError, match="LossConfig.intensity_target"):
        get_config("vif", intensity_target="mean")
    with pytest.raises(ValueError, match="LossConfig.exposedness"):
        get_config("mef", exposedness=(0.2, 0.0))
    with pytest.raises(ValueError, match="OptimConfig.batch_size"):
        get_config("vif", batch_size=0)
    with pytest.raises(ValueError, match="residual head"):
        get_config("pan", a_channels=4)  # out_channels stays 8


@pytest.mark.parametrize("task", TASKS)
def test_dict_and_yaml_round_trip(task):
    cfg = get_config(task, dataset_weights={"msrs": 2.0}, text_drop=0.25, scan_mode="K4")
    assert TaskConfig.from_dict(cfg.to_dict()) == cfg
    assert TaskConfig.from_yaml(cfg.to_yaml()) == cfg
    assert TaskConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert TaskConfig.from_dict(cfg.to_flat_dict()) == cfg  # the flat form reads back too
    with pytest.raises(ValueError, match="unknown keys"):
        TaskConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="unknown keys"):
        TaskConfig.from_dict({**cfg.to_flat_dict(), "bogus": 1})


def test_old_flat_bundled_config_reads_to_the_same_model_config():
    flat = json.loads(MIF_JSON.read_text())["config"]
    assert "extra" in flat and "model" not in flat  # the checkpoint form written before the sections
    cfg = TaskConfig.from_dict(flat)
    expected = {k: v for k, v in flat.items() if k != "extra"}
    got = cfg.to_flat_dict()
    assert {k: got[k] for k in expected} == expected  # every stored value lands in its typed field
    assert TaskConfig.from_dict(cfg.to_dict()) == cfg
    # the model it builds has the same parameters as one built from the sectioned form
    from fusion.train.inference import model_from_config

    a, b = model_from_config(flat), model_from_config(cfg.to_dict())
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)
    # old free-form extra keys become typed fields; unknown ones are named
    old = {**flat, "extra": {"text_source": "b", "pan_ssim_window": 7, "ssim_weighting": "pixel"}}
    c2 = TaskConfig.from_dict(old)
    assert (c2.data.text_source, c2.loss.pan_ssim_window, c2.loss.ssim_weighting) == ("b", 7, "pixel")
    with pytest.raises(ValueError, match="extra.mystery"):
        TaskConfig.from_dict({**flat, "extra": {"mystery": 1}})


def _old_build_loss(d: dict):
    """`build_loss` as it read the flat config and its `extra` dict before the sections."""
    extra, task = d.get("extra") or {}, d["task"]
    if task in ("pan", "hmif"):
        return PanLoss(lam=d["pan_lambda"], ssim_window=int(extra.get("pan_ssim_window", 11)),
                       ssim_sigma=d["ssim_sigma"])
    return FusionLoss(task=task, eta=d["eta"], gt_weight=d["gt_weight"], ssim_window=d["ssim_window"],
                      ssim_sigma=d["ssim_sigma"], weighting=str(extra.get("ssim_weighting", "image")),
                      intensity_target=d["intensity_target"])


@pytest.mark.parametrize("task", TASKS)
def test_build_loss_matches_the_flat_behaviour(task):
    cfg = get_config(task)
    new, old = build_loss(cfg), _old_build_loss({**cfg.to_flat_dict(), "extra": {}})
    assert type(new) is type(old) and vars(new) == vars(old)
    g = torch.Generator().manual_seed(0)
    c = cfg.model.a_channels
    out, a, gt = (torch.rand(2, c, 24, 24, generator=g) for _ in range(3))
    b = torch.rand(2, cfg.model.b_channels, 24, 24, generator=g)
    assert torch.equal(new(out, a, b, gt=gt)[0], old(out, a, b, gt=gt)[0])
    pixel = build_loss(cfg.replace(ssim_weighting="pixel", pan_ssim_window=7))
    assert (pixel.ssim_window == 7) if task in ("pan", "hmif") else (pixel.weighting == "pixel")


def test_recipes_hold_a_budget_and_overrides():
    for t in TASKS:
        paper, cpu = get_recipe(t, "paper"), get_recipe(t, "cpu")
        assert paper.overrides == {} and paper.epochs == get_config(t).optim.epochs
        cfg = cpu.apply(get_config(t))
        assert cpu.steps and cfg.model.drop_path == 0.0 and cfg.data.crop_size == cpu.overrides["crop_size"]
        assert cfg.optim.batch_size == cpu.overrides["batch_size"]
    mif = get_recipe("mif", "cpu")
    assert (mif.steps, mif.ema_decay, mif.checkpoint_every, mif.val_every) == (600, 0.995, 100, 200)
    assert mif.overrides == {"drop_path": 0.0, "batch_size": 4, "crop_size": (64, 64),
                             "crop_scale": (0.0625, 0.0625), "crop_ratio": (1.0, 1.0), "fusion_base": "weights",
                             "ssim_weighting": "pixel"}
    assert get_recipe("mff", "cpu").apply(get_config("mff")).data.synthetic == "defocus"
    from fusion.config import TrainRecipe

    with pytest.raises(ValueError, match="'crop'"):
        TrainRecipe(name="x", steps=1, overrides={"crop": 3})
    # validation runs from the checkpoint hook: a cadence that is not a multiple would silently become the lcm
    with pytest.raises(ValueError, match=r"val_every \(250\) must be a multiple of checkpoint_every \(100\), "
                                         r"else validation runs every 500 steps"):
        TrainRecipe(name="x", steps=1, checkpoint_every=100, val_every=250)


def test_train_settings_take_the_optimiser_section():
    from fusion.train.trainer import TrainSettings

    cfg = get_config("mef", lr=3e-4, weight_decay=0.0)
    s = TrainSettings(cfg.optim, steps=3)
    assert s.optim is cfg.optim and s.optim.lr == 3e-4
    assert not any(hasattr(s, k) for k in ("lr", "betas", "lr_min", "weight_decay", "batch_size"))
    with pytest.raises(TypeError, match="OptimConfig"):
        TrainSettings({"lr": 1e-3}, steps=3)  # type: ignore[arg-type]
