"""The one registry of per-task configurations (Table 1 and supplement sec. 1; Eq. 19-20).

`get_config(task, **overrides)` returns a frozen `TaskConfig`; `TASKS` names the six tasks. Every number
the paper gives lives here (architecture, optimiser, schedule, crops, loss weights) together with the
text/mask settings. `TaskConfig.to_dict()/from_dict()` and `to_yaml()/from_yaml()`
serialise it for checkpoints.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from rwkvfusion_io.tasks import FUSION_TASKS, SPECTRAL_RATIO, SPECTRAL_TASKS, TASKS

SHARPENING_TASKS = SPECTRAL_TASKS

MaskKind = Literal["none", "binary", "two", "onehot"]


@dataclass(frozen=True)
class TaskConfig:
    """Every setting of one task. Tuples with one entry per U-net level (encoder stage i / decoder mirror)."""

    task: str
    # ---- I/O: `a` is the main input (ir/MRI/under/far, or the upsampled LRMS `lms`), `b` the second source
    a_channels: int = 1            # pan: MS bands (4 GF2/QB, 8 WV3); hmif: HS bands (128 Chikusei, 102 Pavia)
    b_channels: int = 1            # pan: 1 (PAN); hmif: 3 (HR-MSI)
    out_channels: int = 1
    head: Literal["fusion", "residual"] = "fusion"   # Y head vs Conv3x3(..) + lms (main paper sec. 3)
    output_clamp: Literal["ste", "hard", "none"] = "ste"
    # fusion head base: "none" = Conv3x3(res3conv(feat) + embedding) (main paper sec. 3); "mean" adds (A + B) / 2 and
    # zero-initialises the head, so training starts from the average image (like the residual sharpening head)
    fusion_base: Literal["none", "mean"] = "none"
    ratio: int = 1                 # spatial ratio LRMS -> PAN (pan/hmif: 4); informational for data/metrics
    # ---- architecture (Table 1)
    arch: Literal["unet", "plain"] = "unet"
    base_channels: int = 32
    chan_upscales: tuple[int, ...] = (1, 1)
    enc_layers: tuple[int, ...] = (1, 1)
    mid_layers: int = 1
    dec_layers: tuple[int, ...] = (1, 1)
    ffn_ratios: tuple[int, ...] = (2, 2)
    drop_path: float = 0.2
    plain_layers: int = 4          # plain-RWKV ablation depth (supplement sec. 5: 4 for MSRS, 8 for Pavia)
    # ---- spatial mixing (Eq. 2, main paper sec. 3.4)
    spatial_op: Literal["bi_wkv", "attention"] = "bi_wkv"
    spatial_gate: Literal["silu", "receptance"] = "silu"
    scan_mode: Literal["K0", "K2", "K4"] = "K2"
    wkv_impl: str | None = None    # rwkvfusion_kernels.bi_wkv impl override (None = auto)
    attn_head_dim: int = 32        # only for spatial_op="attention"
    cond_source: Literal["b", "ab"] = "b"  # conditioning from the second source or from cat[a, b]
    # ---- text guidance (main paper sec. 3.5)
    use_text: bool = True
    text_dim: int = 512            # T5 width: 1024 for VIF/MIF (two captions concatenated along channels)
    text_hidden: int = 64          # model-level text projection width
    text_max_len: int = 512        # positions of the fixed sin-cos embedding
    text_ds_ratios: tuple[int, ...] = (8, 4)  # image downsample before the joint [image; text] mix, per level
    text_drop: float = 0.0         # train-time probability of dropping the whole batch's text
    # ---- mask guidance
    mask_kind: MaskKind = "binary"
    mask_channels: int = 1         # channels of a float mask input ([B, mask_channels, H, W])
    mask_classes: int = 0          # one-hot vocabulary size for "onehot" masks (20): ids 1..n, 0 = background
    # ---- optimisation (Table 1)
    batch_size: int = 10
    epochs: int = 200
    lr: float = 1e-3
    betas: tuple[float, float] = (0.95, 0.99)
    weight_decay: float = 1e-6
    min_lr: float = 1e-5           # cosine annealing 1e-3 -> 1e-5
    # ---- data (supplement sec. 1)
    crop_size: tuple[int, int] | None = (224, 280)   # (H, W) training crop; None = uncropped (MIF)
    crop_scale: tuple[float, float] | None = None    # RandomResizedCrop scale (MEF/MFF)
    crop_ratio: tuple[float, float] | None = None    # RandomResizedCrop aspect ratio (MEF/MFF)
    # pan/hmif .mat scenes: "file" = the file name's split; "halves" = train / val / test regions of every
    # scene (rwkvfusion_io.spectral.half_region), for test scenes that are the only data of their sensor
    scene_split: Literal["file", "halves"] = "file"
    # ---- losses (Eq. 19-20, Table 1)
    eta: tuple[float, float, float] = (10.0, 2.0, 20.0)  # intensity, SSIM, gradient
    gt_weight: float = 5.0         # + gt_weight * L1(F, GT) when a ground truth exists
    # intensity term target: "sources" = Eq. 20, L1(F, A) + L1(F, B) (mask-aware for VIF); "max" = 2 L1(F, max(A, B))
    # (the peers' target (FILM, TeSG): keeps the brighter source's contrast instead of pulling F to the average)
    intensity_target: Literal["sources", "max"] = "sources"
    pan_lambda: float = 0.1        # Eq. 19: L1 + lambda * (1 - SSIM)
    ssim_window: int = 5
    ssim_sigma: float = 1.5
    # ---- training data mix and validation split (multi-dataset training, `fusion.data.multi`)
    # sampling weight of each dataset found under the training roots, by its folder name (first path part of
    # its location under the root, e.g. "msrs", or the full relative path "harvard/SPECT-MRI"); datasets not
    # named weigh 1. A dataset of weight w is drawn w / sum(w) of the time, uniformly inside it.
    dataset_weights: dict[str, float] = field(default_factory=dict)
    val_fraction: float = 0.1      # groups (Harvard: series, else pairs) of each dataset held out for validation
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, carried through serialisation

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"TaskConfig.task: unknown task {self.task!r}; expected one of {TASKS}")
        n = len(self.chan_upscales)
        for name in ("enc_layers", "dec_layers", "ffn_ratios", "text_ds_ratios"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"TaskConfig.{name}: needs {n} entries (one per level, like chan_upscales), "
                                 f"got {getattr(self, name)}")
        if self.scan_mode not in ("K0", "K2", "K4"):
            raise ValueError(f"TaskConfig.scan_mode: {self.scan_mode!r} not in K0/K2/K4")
        if self.spatial_op not in ("bi_wkv", "attention"):
            raise ValueError(f"TaskConfig.spatial_op: {self.spatial_op!r} not in ('bi_wkv', 'attention')")
        if self.spatial_gate not in ("silu", "receptance"):
            raise ValueError(f"TaskConfig.spatial_gate: {self.spatial_gate!r} not in ('silu', 'receptance')")
        if self.arch not in ("unet", "plain"):
            raise ValueError(f"TaskConfig.arch: {self.arch!r} not in ('unet', 'plain')")
        if self.head not in ("fusion", "residual"):
            raise ValueError(f"TaskConfig.head: {self.head!r} not in ('fusion', 'residual')")
        if self.fusion_base not in ("none", "mean"):
            raise ValueError(f"TaskConfig.fusion_base: {self.fusion_base!r} not in ('none', 'mean')")
        if self.output_clamp not in ("ste", "hard", "none"):
            raise ValueError(f"TaskConfig.output_clamp: {self.output_clamp!r} not in ('ste', 'hard', 'none')")
        if self.scene_split not in ("file", "halves"):
            raise ValueError(f"TaskConfig.scene_split: {self.scene_split!r} not in ('file', 'halves')")
        if self.intensity_target not in ("sources", "max"):
            raise ValueError(f"TaskConfig.intensity_target: {self.intensity_target!r} not in ('sources', 'max')")
        if self.mask_kind not in ("none", "binary", "two", "onehot"):
            raise ValueError(f"TaskConfig.mask_kind: {self.mask_kind!r} not in none/binary/two/onehot")
        if self.mask_kind == "onehot" and self.mask_classes < 2:
            raise ValueError("TaskConfig.mask_classes: a one-hot mask needs at least 2 classes")
        if not 0.0 <= self.text_drop <= 1.0:
            raise ValueError(f"TaskConfig.text_drop: {self.text_drop} not in [0, 1]")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"TaskConfig.val_fraction: {self.val_fraction} not in [0, 1)")
        if any(float(w) < 0 for w in self.dataset_weights.values()):
            raise ValueError(f"TaskConfig.dataset_weights: negative weight in {self.dataset_weights}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"TaskConfig.drop_path: {self.drop_path} not in [0, 1)")
        for name in ("a_channels", "b_channels", "out_channels", "base_channels", "text_dim", "text_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"TaskConfig.{name}: must be >= 1, got {getattr(self, name)}")
        if min(self.chan_upscales) < 1 or min(self.text_ds_ratios) < 1 or min(self.ffn_ratios) < 1:
            raise ValueError("TaskConfig: chan_upscales, text_ds_ratios and ffn_ratios must be >= 1")
        if self.head == "residual" and self.out_channels != self.a_channels:
            raise ValueError("TaskConfig: the residual head adds `a` (lms), so out_channels must equal a_channels")

    # ------------------------------------------------------------------ derived
    @property
    def n_levels(self) -> int:
        """Number of U-net encoder (= decoder) stages."""
        return len(self.chan_upscales)

    @property
    def total_downsample(self) -> int:
        """Inputs are padded to a multiple of this factor (2 per level)."""
        return 2 ** self.n_levels if self.arch == "unet" else 1

    @property
    def mask_in_channels(self) -> int:
        """Channels the model's mask branch receives (0 when the task has no mask)."""
        if self.mask_kind == "none":
            return 0
        return self.mask_classes if self.mask_kind == "onehot" else self.mask_channels

    @property
    def is_fusion(self) -> bool:
        return self.task in FUSION_TASKS

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-friendly dict (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, dict) else v)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskConfig:
        """Inverse of `to_dict`; unknown keys raise a ValueError naming them."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"TaskConfig.from_dict: unknown keys {unknown}")
        if "task" not in d:
            raise ValueError("TaskConfig.from_dict: missing key 'task'")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> TaskConfig:
        import yaml

        d = yaml.safe_load(text)
        if not isinstance(d, dict):
            raise ValueError("TaskConfig.from_yaml: the document is not a mapping")
        return cls.from_dict(d)

    def replace(self, **overrides: Any) -> TaskConfig:
        """`dataclasses.replace` with a clear error for unknown field names."""
        return _replace(self, overrides)


_COMMON_FUSION = dict(a_channels=1, b_channels=1, out_channels=1, head="fusion", ratio=1)
_COMMON_SHARP = dict(head="residual", ratio=SPECTRAL_RATIO, chan_upscales=(2, 1, 1), enc_layers=(2, 1, 1), mid_layers=1,
                     dec_layers=(2, 1, 1), ffn_ratios=(2, 2, 2), drop_path=0.2, text_dim=512,
                     text_ds_ratios=(4, 2, 1), mask_kind="none", mask_channels=0, batch_size=64, epochs=800,
                     crop_size=(64, 64), plain_layers=8)

_DEFAULTS: dict[str, dict[str, Any]] = {
    # VIF: MSRS/M3FD, crop+resize 224x280, binary mask (MSRS labels binarised / merged SAM masks)
    "vif": dict(**_COMMON_FUSION, chan_upscales=(1, 1), enc_layers=(1, 1), dec_layers=(1, 1), ffn_ratios=(2, 2),
                drop_path=0.2, text_dim=1024, text_ds_ratios=(8, 4), mask_kind="binary", mask_channels=1,
                batch_size=10, epochs=200, crop_size=(224, 280), plain_layers=4),
    # MIF: Harvard MRI-SPECT, uncropped, two-channel mask
    "mif": dict(**_COMMON_FUSION, chan_upscales=(1, 1), enc_layers=(1, 1), dec_layers=(1, 1), ffn_ratios=(2, 2),
                drop_path=0.3, text_dim=1024, text_ds_ratios=(4, 4), mask_kind="two", mask_channels=2,
                batch_size=12, epochs=50, crop_size=None, plain_layers=4),
    # MEF: SICE/MEFB, RandomResizedCrop 256 scale [0.8, 1] ratio [0.8, 1.4], one-hot class map over 20 classes;
    # unsupervised (supplement sec. 1 iii: normally exposed images are not used as GT), so no GT term
    "mef": dict(**_COMMON_FUSION, chan_upscales=(1, 1), enc_layers=(2, 1), dec_layers=(2, 1), ffn_ratios=(2, 2),
                drop_path=0.1, gt_weight=0.0, text_dim=512, text_ds_ratios=(8, 4), mask_kind="onehot", mask_channels=20,
                mask_classes=20, batch_size=12, epochs=50, crop_size=(256, 256), crop_scale=(0.8, 1.0),
                crop_ratio=(0.8, 1.4), plain_layers=4),
    # MFF: RealMFF/MFI-WHU, same augmentation as MEF
    "mff": dict(**_COMMON_FUSION, chan_upscales=(1, 1), enc_layers=(1, 1), dec_layers=(1, 1), ffn_ratios=(2, 2),
                drop_path=0.1, text_dim=512, text_ds_ratios=(8, 8), mask_kind="onehot", mask_channels=20,
                mask_classes=20, batch_size=12, epochs=50, crop_size=(256, 256), crop_scale=(0.8, 1.0),
                crop_ratio=(0.8, 1.4), plain_layers=4),
    # Pansharpening: PanCollection (WV3 8 bands default; GF2/QB: build with a_channels=4), 64x64 patches
    "pan": dict(**_COMMON_SHARP, a_channels=8, b_channels=1, out_channels=8),
    # HMIF: Chikusei 128 bands (Pavia: a_channels=out_channels=102), HR-MSI 3 bands, 64x64 patches
    "hmif": dict(**_COMMON_SHARP, a_channels=128, b_channels=3, out_channels=128),
}

# convenience aliases accepted by get_config/build_model
_ALIASES = {"bands": ("a_channels", "out_channels")}


def _replace(cfg: TaskConfig, overrides: dict[str, Any]) -> TaskConfig:
    names = {f.name for f in dataclasses.fields(TaskConfig)}
    kw: dict[str, Any] = {}
    for k, v in overrides.items():
        if k in _ALIASES:
            for target in _ALIASES[k]:
                kw[target] = v
        elif k in names:
            kw[k] = tuple(v) if isinstance(v, list) else v
        else:
            raise ValueError(f"unknown TaskConfig field {k!r}; valid fields: {sorted(names)}")
    return dataclasses.replace(cfg, **kw)


def get_config(task: str, **overrides: Any) -> TaskConfig:
    """Paper configuration of `task` with `overrides` applied (`bands=` sets a_channels and out_channels)."""
    if task not in _DEFAULTS:
        raise ValueError(f"get_config: unknown task {task!r}; expected one of {TASKS}")
    cfg = TaskConfig(task=task, **_DEFAULTS[task])
    return _replace(cfg, overrides) if overrides else cfg


# --------------------------------------------------------------------------- training recipes
RecipeName = Literal["paper", "cpu"]
RECIPES: tuple[str, ...] = ("paper", "cpu")


@dataclass(frozen=True)
class TrainRecipe:
    """How one task is trained: budget, crops, optimiser schedule, EMA, validation cadence.

    ``paper`` is Table 1 (GPU: the task config's epochs, batch, crop, lr 1e-3 -> 1e-5 cosine); ``cpu`` is
    sized for a 2-core machine (about 90 minutes). ``steps`` (when set) overrides ``epochs``. The crop
    fields and ``drop_path`` replace the task config's for training (``config_overrides``); inference is
    fully convolutional, so the bundled model runs at any size.
    """

    name: str
    batch_size: int
    steps: int | None = None
    epochs: int | None = None
    crop_size: tuple[int, int] | None = None
    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] | None = None
    lr: float = 1e-3
    min_lr: float = 1e-5
    ema_decay: float = 0.999
    drop_path: float = 0.0
    checkpoint_every: int = 1000
    val_every: int = 1000          # steps between validations of the EMA weights (the best is kept)
    val_max_pairs: int = 16        # validation pairs per dataset
    val_max_side: int = 512        # validation pairs area-downscaled to this longer side
    # further TaskConfig fields this recipe changes (loss/head choices justified in docs/ablations.md)
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"TrainRecipe {self.name!r}: give exactly one of steps or epochs")
        for f in ("batch_size", "checkpoint_every", "val_every", "val_max_pairs", "val_max_side"):
            if getattr(self, f) < 1:
                raise ValueError(f"TrainRecipe.{f}: must be >= 1, got {getattr(self, f)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainRecipe.ema_decay: {self.ema_decay} not in [0, 1)")

    def config_overrides(self) -> dict[str, Any]:
        """The ``TaskConfig`` fields this recipe sets for training."""
        return {"crop_size": self.crop_size, "crop_scale": self.crop_scale, "crop_ratio": self.crop_ratio,
                "drop_path": self.drop_path, "batch_size": self.batch_size, "lr": self.lr, "min_lr": self.min_lr,
                **self.overrides}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else
                         {k: list(x) if isinstance(x, tuple) else x for k, x in v.items()} if isinstance(v, dict) else v)
                for f in dataclasses.fields(self)}


# CPU recipes: 2 shared cores, about 1-2 s per step at batch 4 and 64x64 (3 s at 128x128) for the U-net of
# Table 1. MIF crops are exact windows of the 256x256 slices (ratio 1: no resampling, so the network sees
# test-time statistics); VIF/MEF/MFF keep the paper's random-resized-crop family (not yet tuned on CPU).
_CPU_RECIPES: dict[str, dict[str, Any]] = {
    "vif": dict(steps=3000, batch_size=4, crop_size=(128, 128), crop_scale=(0.5, 1.0), ema_decay=0.995,
                checkpoint_every=100, val_every=250),
    # MIF: 64x64 windows (no resampling); at equal CPU time more steps beat larger crops (docs/ablations.md)
    "mif": dict(steps=1800, batch_size=4, crop_size=(64, 64), crop_scale=(0.0625, 0.0625), crop_ratio=(1.0, 1.0),
                ema_decay=0.995, checkpoint_every=100, val_every=200),
    "mef": dict(steps=3000, batch_size=4, crop_size=(128, 128), crop_scale=(0.8, 1.0), crop_ratio=(0.8, 1.4),
                ema_decay=0.995, checkpoint_every=100, val_every=250),
    "mff": dict(steps=3000, batch_size=4, crop_size=(128, 128), crop_scale=(0.8, 1.0), crop_ratio=(0.8, 1.4),
                ema_decay=0.995, checkpoint_every=100, val_every=250),
    # pan: reduced-resolution crops of the top half of each shared scene (train/val regions), the bottom half
    # held back for testing (``scene_split="halves"``); one model per band count (``--bands 4`` / ``8``)
    "pan": dict(steps=3000, batch_size=16, crop_size=(32, 32), ema_decay=0.995, checkpoint_every=100, val_every=250,
                overrides={"scene_split": "halves"}),
    "hmif": dict(steps=3000, batch_size=8, crop_size=(32, 32), ema_decay=0.995, checkpoint_every=100,
                 val_every=250),
}


def get_recipe(task: str, name: str = "paper") -> TrainRecipe:
    """The ``paper`` (Table 1, from the task config) or ``cpu`` training recipe of ``task``."""
    if task not in _DEFAULTS:
        raise ValueError(f"get_recipe: unknown task {task!r}; expected one of {TASKS}")
    if name == "paper":
        cfg = get_config(task)
        return TrainRecipe(name="paper", epochs=cfg.epochs, batch_size=cfg.batch_size, crop_size=cfg.crop_size,
                           crop_scale=cfg.crop_scale, crop_ratio=cfg.crop_ratio, lr=cfg.lr, min_lr=cfg.min_lr,
                           ema_decay=0.999, drop_path=cfg.drop_path)
    if name == "cpu":
        return TrainRecipe(name="cpu", **_CPU_RECIPES[task])
    raise ValueError(f"get_recipe: unknown recipe {name!r}; expected one of {RECIPES}")


__all__ = ["TASKS", "FUSION_TASKS", "SHARPENING_TASKS", "RECIPES", "TaskConfig", "TrainRecipe", "get_config",
           "get_recipe"]
