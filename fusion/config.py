"""The one registry of per-task configurations (Table 1 and supplement sec. 1; Eq. 19-20).

`get_config(task, **overrides)` returns a frozen `TaskConfig` made of typed sections: `model` (I/O and
architecture, Table 1), `data` (crops, ratio, dataset mix; supplement sec. 1), `loss` (Eq. 19-20 weights),
`optim` (AdamW and cosine schedule, Table 1) and `guidance` (text and mask inputs, main paper sec. 3.5).
Every number the paper gives lives here; consumers read their section and keep no defaults of their own.
Overrides use the flat field names (`crop_size=`, `eta=`, `bands=`), each routed to its section.
`TaskConfig.to_dict()/from_dict()` and `to_yaml()/from_yaml()` serialise it; `from_dict` also reads
the flat form of older checkpoints.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from rwkvfusion_io.tasks import FUSION_TASKS, SPECTRAL_RATIO, SPECTRAL_TASKS, TASKS

SHARPENING_TASKS = SPECTRAL_TASKS

MaskKind = Literal["none", "binary", "two", "onehot"]


def dataset_value(name: str, table: Mapping[str, Any], default: Any = None) -> Any:
    """The entry of a per-dataset ``table`` (``DataConfig.dataset_weights``, ``LossConfig.intensity_target_by_dataset``:
    keyed by dataset folder, e.g. ``msrs``, ``harvard`` or ``harvard/CT-MRI``) for a dataset or sample name
    (``harvard/CT-MRI/2001``): the longest key equal to ``name`` or one of its leading path parts, else ``default``."""
    parts = name.split("/")
    for n in range(len(parts), 0, -1):
        key = "/".join(parts[:n])
        if key in table:
            return table[key]
    return default


def _check_choice(section: str, name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{section}.{name}: {value!r} not in {choices}")


@dataclass(frozen=True)
class ModelConfig:
    """Network I/O and architecture (Table 1; Eq. 2 spatial mixing). Tuples have one entry per U-net level."""

    # ---- I/O: `a` is the main input (ir/MRI/under/far, or the upsampled LRMS `lms`), `b` the second source
    a_channels: int = 1            # pan: MS bands (4 GF2/QB, 8 WV3); hmif: HS bands (128 Chikusei, 102 Pavia)
    b_channels: int = 1            # pan: 1 (PAN); hmif: 3 (HR-MSI)
    out_channels: int = 1
    head: Literal["fusion", "residual"] = "fusion"   # Y head vs Conv3x3(..) + lms (main paper sec. 3)
    output_clamp: Literal["ste", "hard", "none"] = "ste"
    # fusion head base: "none" = Conv3x3(res3conv(feat) + embedding) (main paper sec. 3); "mean" adds (A + B) / 2 and
    # zero-initialises the head, so training starts from the average image (like the residual sharpening head);
    # "weights": the head's extra channel is a per-pixel weight logit l, F = B + sigmoid(l) (A - B) + residual, both
    # zero-initialised (starts at the average; edges are taken from the sources instead of being regenerated);
    # "select": the weight logit alone, F = B + sigmoid(l) (A - B) (every output pixel a convex mix of the sources)
    fusion_base: Literal["none", "mean", "weights", "select"] = "none"
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
    # ---- text/mask branch widths (main paper sec. 3.5)
    text_hidden: int = 64          # model-level text projection width
    text_ds_ratios: tuple[int, ...] = (8, 4)  # image downsample before the joint [image; text] mix, per level

    def __post_init__(self) -> None:
        n = len(self.chan_upscales)
        for name in ("enc_layers", "dec_layers", "ffn_ratios", "text_ds_ratios"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ModelConfig.{name}: needs {n} entries (one per level, like chan_upscales), "
                                 f"got {getattr(self, name)}")
        _check_choice("ModelConfig", "scan_mode", self.scan_mode, ("K0", "K2", "K4"))
        _check_choice("ModelConfig", "spatial_op", self.spatial_op, ("bi_wkv", "attention"))
        _check_choice("ModelConfig", "spatial_gate", self.spatial_gate, ("silu", "receptance"))
        _check_choice("ModelConfig", "arch", self.arch, ("unet", "plain"))
        _check_choice("ModelConfig", "head", self.head, ("fusion", "residual"))
        _check_choice("ModelConfig", "fusion_base", self.fusion_base, ("none", "mean", "weights", "select"))
        if self.fusion_base in ("weights", "select") and not self.a_channels == self.b_channels == self.out_channels:
            raise ValueError(f"ModelConfig.fusion_base={self.fusion_base!r}: needs a_channels == b_channels == out_channels, got "
                             f"{self.a_channels}, {self.b_channels}, {self.out_channels}")
        _check_choice("ModelConfig", "output_clamp", self.output_clamp, ("ste", "hard", "none"))
        _check_choice("ModelConfig", "cond_source", self.cond_source, ("b", "ab"))
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"ModelConfig.drop_path: {self.drop_path} not in [0, 1)")
        for name in ("a_channels", "b_channels", "out_channels", "base_channels", "text_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name}: must be >= 1, got {getattr(self, name)}")
        if min(self.chan_upscales) < 1 or min(self.text_ds_ratios) < 1 or min(self.ffn_ratios) < 1:
            raise ValueError("ModelConfig: chan_upscales, text_ds_ratios and ffn_ratios must be >= 1")
        if self.head == "residual" and self.out_channels != self.a_channels:
            raise ValueError("ModelConfig: the residual head adds `a` (lms), so out_channels must equal a_channels")

    @property
    def n_levels(self) -> int:
        """Number of U-net encoder (= decoder) stages."""
        return len(self.chan_upscales)

    @property
    def total_downsample(self) -> int:
        """Inputs are padded to a multiple of this factor (2 per level)."""
        return 2 ** self.n_levels if self.arch == "unet" else 1


@dataclass(frozen=True)
class DataConfig:
    """Training crops (supplement sec. 1), spatial ratio, multi-dataset mix and validation split."""

    ratio: int = 1                 # spatial ratio LRMS -> PAN (pan/hmif: 4); informational for data/metrics
    crop_size: tuple[int, int] | None = (224, 280)   # (H, W) training crop; None = uncropped (MIF)
    crop_scale: tuple[float, float] | None = None    # crop area scale (VIF crop, MEF/MFF RandomResizedCrop)
    crop_ratio: tuple[float, float] | None = None    # RandomResizedCrop aspect ratio (MEF/MFF)
    # sampling weight of each dataset found under the training roots, by its folder name (first path part of
    # its location under the root, e.g. "msrs", or the full relative path "harvard/SPECT-MRI"); datasets not
    # named weigh 1. A dataset of weight w is drawn w / sum(w) of the time, uniformly inside it.
    dataset_weights: dict[str, float] = field(default_factory=dict)
    val_fraction: float = 0.1      # groups (Harvard: series, else pairs) of each dataset held out for validation
    val_seed: int = 0              # permutation of the groups that picks them (independent of the training seed)
    # caption used by single-caption tasks (text_dim = encoder width): "a" or "b" (the other when absent)
    text_source: Literal["a", "b"] = "a"
    # pan/hmif .mat scenes: "file" = the file name's split; "halves" = train / val / test regions of every
    # scene (rwkvfusion_io.spectral.half_region), for test scenes that are the only data of their sensor
    scene_split: Literal["file", "halves"] = "file"
    # MFF: "defocus" trains on synthetic multi-focus pairs of the all-in-focus photographs under the training
    # roots (fusion.data.defocus; no real MFF training set here), with the photograph as ground truth
    synthetic: Literal["none", "defocus"] = "none"
    # MEF: exposure push of training pairs (fusion.data.augment.push_exposures): with probability 1/2 each, the
    # under-exposed source's luma times a gain in [1/g, 1] and the over-exposed one's times [1, g], clipped at
    # white (log-uniform); 1 = off. Mimics the darkest / brightest frames of long exposure sequences.
    exposure_gain: float = 1.0
    # fusion tasks: mirror half the training crops left-right (not in the paper; one more draw per sample when on)
    flip: bool = False

    def __post_init__(self) -> None:
        if self.ratio < 1:
            raise ValueError(f"DataConfig.ratio: must be >= 1, got {self.ratio}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"DataConfig.val_fraction: {self.val_fraction} not in [0, 1)")
        if any(float(w) < 0 for w in self.dataset_weights.values()):
            raise ValueError(f"DataConfig.dataset_weights: negative weight in {self.dataset_weights}")
        _check_choice("DataConfig", "text_source", self.text_source, ("a", "b"))
        _check_choice("DataConfig", "scene_split", self.scene_split, ("file", "halves"))
        _check_choice("DataConfig", "synthetic", self.synthetic, ("none", "defocus"))
        if not self.exposure_gain >= 1.0:
            raise ValueError(f"DataConfig.exposure_gain: must be >= 1 (1 = off), got {self.exposure_gain}")
        for name in ("crop_size", "crop_scale", "crop_ratio"):
            v = getattr(self, name)
            if v is not None and len(v) != 2:
                raise ValueError(f"DataConfig.{name}: needs 2 entries or None, got {v}")


IntensityTarget = Literal["sources", "max", "exposedness", "exposure_blend", "bright"]  # LossConfig.intensity_target (FusionLoss reads the same)
INTENSITY_TARGETS: tuple[str, ...] = get_args(IntensityTarget)


@dataclass(frozen=True)
class LossConfig:
    """Loss weights: Eq. 20 (fusion) and Eq. 19 (pansharpening/HMIF), Table 1."""

    eta: tuple[float, float, float] = (10.0, 2.0, 20.0)  # intensity, SSIM, gradient
    gt_weight: float = 5.0         # + gt_weight * L1(F, GT) when a ground truth exists
    # intensity term target: "sources" = Eq. 20, L1(F, A) + L1(F, B) (mask-aware for VIF); "max" = 2 L1(F, max(A, B))
    # (the peers' target (FILM, TeSG): keeps the brighter source's contrast instead of pulling F to the average);
    # "exposedness" = per-pixel weights from Mertens et al.'s well-exposedness (MEF; not in the paper): a weighted L1
    # of two points, so it selects the heavier source per pixel; "exposure_blend" = L1 between low-passes of F and
    # the exposedness-weighted BLEND of the sources (coarse brightness only, as Mertens' coarse pyramid levels);
    # "bright" = "max" where max(A, B) is near white (ramp over ``bright_range``), Eq. 20 elsewhere (CT bone)
    intensity_target: IntensityTarget = "sources"
    # the same per training dataset, keyed like DataConfig.dataset_weights (e.g. {"harvard/CT-MRI": "max"}); datasets
    # not named take intensity_target
    intensity_target_by_dataset: dict[str, IntensityTarget] = field(default_factory=dict)
    # (sigma, power) of the "exposedness" weights exp(-(|x - 0.5| / sigma)^power / 2); Mertens et al.: (0.2, 2)
    exposedness: tuple[float, float] = (0.2, 2.0)
    # Gaussian std (pixels) smoothing those weights and, for "exposure_blend", the low-pass; 0 = per pixel
    exposedness_blur: float = 0.0
    # "bright": max(A, B) values (0-1) over which the per-pixel weight of the max target ramps from 0 to 1 (CT bone
    # is saturated at 1, CT soft tissue stays below ~0.6 in the Harvard training slices)
    bright_range: tuple[float, float] = (0.7, 0.9)
    # SSIM term weights: "image" = one gradient-energy weight per image, "pixel" = per pixel
    # "mef" = 1 - MEF-SSIM(F; A, B) (Ma et al. 2015): no luminance term; per window the desired signal has the
    # larger source contrast and the contrast^4-weighted structure of the sources (fusion.losses.mef_ssim_map)
    ssim_weighting: Literal["image", "pixel", "mef"] = "image"
    ssim_window: int = 5
    ssim_sigma: float = 1.5
    pan_lambda: float = 0.1        # Eq. 19: L1 + lambda * (1 - SSIM)
    pan_ssim_window: int = 11      # Eq. 19 SSIM window (the standard Wang et al. window)

    def __post_init__(self) -> None:
        if len(self.eta) != 3:
            raise ValueError(f"LossConfig.eta: needs 3 weights (intensity, SSIM, gradient), got {self.eta}")
        _check_choice("LossConfig", "intensity_target", self.intensity_target, INTENSITY_TARGETS)
        if len(self.bright_range) != 2 or not 0.0 <= self.bright_range[0] < self.bright_range[1]:
            raise ValueError(f"LossConfig.bright_range: needs 0 <= low < high, got {self.bright_range}")
        for target in self.intensity_target_by_dataset.values():
            _check_choice("LossConfig", "intensity_target_by_dataset", target, INTENSITY_TARGETS)
        if len(self.exposedness) != 2 or min(self.exposedness) <= 0:
            raise ValueError(f"LossConfig.exposedness: needs (sigma, power) > 0, got {self.exposedness}")
        if self.exposedness_blur < 0:
            raise ValueError(f"LossConfig.exposedness_blur: must be >= 0, got {self.exposedness_blur}")
        _check_choice("LossConfig", "ssim_weighting", self.ssim_weighting, ("image", "pixel", "mef"))
        for name in ("ssim_window", "pan_ssim_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"LossConfig.{name}: must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with cosine annealing 1e-3 -> 1e-5 (Table 1); gradient-norm clipping (0 = off)."""

    batch_size: int = 10
    epochs: int = 200
    lr: float = 1e-3
    betas: tuple[float, float] = (0.95, 0.99)
    weight_decay: float = 1e-6
    min_lr: float = 1e-5
    grad_clip: float = 1.0
    # bfloat16 autocast of the training forward on CPU as well (CUDA training always autocasts to bf16); the
    # loss, LayerNorms and the Bi-WKV recurrences stay float32. Not in the paper: a CPU speed setting.
    cpu_bf16: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"OptimConfig.{name}: must be >= 1, got {getattr(self, name)}")
        if len(self.betas) != 2:
            raise ValueError(f"OptimConfig.betas: needs 2 entries, got {self.betas}")


@dataclass(frozen=True)
class GuidanceConfig:
    """Text and mask inputs (main paper sec. 3.5)."""

    use_text: bool = True
    text_dim: int = 512            # T5 width: 1024 for VIF/MIF (two captions concatenated along channels)
    text_max_len: int = 512        # positions of the fixed sin-cos embedding
    text_drop: float = 0.0         # train-time probability of dropping the whole batch's text
    mask_kind: MaskKind = "binary"
    mask_channels: int = 1         # channels of a float mask input ([B, mask_channels, H, W])
    mask_classes: int = 0          # one-hot vocabulary size for "onehot" masks (20): ids 1..n, 0 = background

    def __post_init__(self) -> None:
        _check_choice("GuidanceConfig", "mask_kind", self.mask_kind, ("none", "binary", "two", "onehot"))
        if self.mask_kind == "onehot" and self.mask_classes < 2:
            raise ValueError("GuidanceConfig.mask_classes: a one-hot mask needs at least 2 classes")
        if not 0.0 <= self.text_drop <= 1.0:
            raise ValueError(f"GuidanceConfig.text_drop: {self.text_drop} not in [0, 1]")
        for name in ("text_dim", "text_max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"GuidanceConfig.{name}: must be >= 1, got {getattr(self, name)}")

    @property
    def mask_in_channels(self) -> int:
        """Channels the model's mask branch receives (0 when the task has no mask)."""
        if self.mask_kind == "none":
            return 0
        return self.mask_classes if self.mask_kind == "onehot" else self.mask_channels


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "loss": LossConfig, "optim": OptimConfig,
                             "guidance": GuidanceConfig}
# flat field name -> its section (each name lives in exactly one section)
FIELD_SECTION: dict[str, str] = {f.name: s for s, c in SECTIONS.items() for f in dataclasses.fields(c)}
assert len(FIELD_SECTION) == sum(len(dataclasses.fields(c)) for c in SECTIONS.values()), "duplicate field names"
# convenience aliases accepted by get_config/build_model
_ALIASES = {"bands": ("a_channels", "out_channels")}
# keys of the old free-form `extra` dict of flat configs, now typed fields
_OLD_EXTRA_KEYS = ("text_source", "ssim_weighting", "pan_ssim_window")


def _value(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, dict) else v)


def route_overrides(overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat overrides (``crop_size=``, ``bands=``) or section ones (``loss={"eta": ...}``) -> {section: {field: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for k, v in overrides.items():
        if k in SECTIONS:
            if isinstance(v, SECTIONS[k]):
                v = {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
            if not isinstance(v, dict):
                raise ValueError(f"override {k!r}: expected a {SECTIONS[k].__name__} or a dict, got {type(v).__name__}")
            for name, x in v.items():
                if FIELD_SECTION.get(name) != k:
                    raise ValueError(f"unknown {SECTIONS[k].__name__} field {name!r}; valid fields: "
                                     f"{sorted(n for n, s in FIELD_SECTION.items() if s == k)}")
                out.setdefault(k, {})[name] = _value(x)
        elif k in _ALIASES:
            for target in _ALIASES[k]:
                out.setdefault(FIELD_SECTION[target], {})[target] = v
        elif k in FIELD_SECTION:
            out.setdefault(FIELD_SECTION[k], {})[k] = _value(v)
        else:
            raise ValueError(f"unknown TaskConfig field {k!r}; valid fields: {sorted([*FIELD_SECTION, *_ALIASES])}")
    return out


@dataclass(frozen=True)
class TaskConfig:
    """Every setting of one task, grouped into typed sections (Table 1; supplement sec. 1)."""

    task: str
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)

    SECTIONS: ClassVar[dict[str, type]] = SECTIONS

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"TaskConfig.task: unknown task {self.task!r}; expected one of {TASKS}")
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"TaskConfig.{name}: expected a {cls.__name__}, got {type(getattr(self, name)).__name__}")

    @property
    def is_fusion(self) -> bool:
        return self.task in FUSION_TASKS

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-friendly dict ``{"task", "model": {...}, "data": {...}, ...}`` (tuples become lists)."""
        out: dict[str, Any] = {"task": self.task}
        for name in SECTIONS:
            sec = getattr(self, name)
            out[name] = {f.name: _plain(getattr(sec, f.name)) for f in dataclasses.fields(sec)}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskConfig:
        """Inverse of `to_dict`; also reads the flat form of older checkpoints. Unknown keys raise a ValueError."""
        if "task" not in d:
            raise ValueError("TaskConfig.from_dict: missing key 'task'")
        rest = {k: v for k, v in d.items() if k != "task"}
        if any(isinstance(rest.get(s), dict) for s in SECTIONS):  # sectioned form
            unknown = sorted(set(rest) - set(SECTIONS))
        else:  # flat form: every field at the top level, free-form keys under "extra"
            extra = dict(rest.pop("extra", None) or {})
            unknown = sorted(set(rest) - set(FIELD_SECTION)) + sorted(f"extra.{k}" for k in set(extra) - set(_OLD_EXTRA_KEYS))
            rest.update(extra)
        if unknown:
            raise ValueError(f"TaskConfig.from_dict: unknown keys {unknown}")
        try:
            routed = route_overrides(rest)
        except ValueError as exc:
            raise ValueError(f"TaskConfig.from_dict: unknown keys ({exc})") from exc
        return cls(task=d["task"], **{s: SECTIONS[s](**routed.get(s, {})) for s in SECTIONS})

    def to_flat_dict(self) -> dict[str, Any]:
        """Every field at the top level (``{"task", "a_channels", ...}``), the form older checkpoints stored."""
        nested = self.to_dict()
        return {"task": self.task, **{k: v for name in SECTIONS for k, v in nested[name].items()}}

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
        """This config with flat (``eta=``) or section (``loss={...}``) overrides; unknown names raise ValueError."""
        routed = route_overrides(overrides)
        return dataclasses.replace(self, **{s: dataclasses.replace(getattr(self, s), **kw) for s, kw in routed.items()})


_COMMON_FUSION = dict(a_channels=1, b_channels=1, out_channels=1, head="fusion", ratio=1)
_COMMON_SHARP = dict(head="residual", ratio=SPECTRAL_RATIO, chan_upscales=(2, 1, 1), enc_layers=(2, 1, 1), mid_layers=1,
                     dec_layers=(2, 1, 1), ffn_ratios=(2, 2, 2), drop_path=0.2, text_dim=512,
                     text_ds_ratios=(4, 2, 1), mask_kind="none", mask_channels=0, batch_size=64, epochs=800,
                     crop_size=(64, 64), plain_layers=8)

# per-task values in flat names (routed to their sections); fields not named keep the section's value
_DEFAULTS: dict[str, dict[str, Any]] = {
    # VIF: MSRS/M3FD, crop (area scale [0.5, 1]) + resize 224x280, binary mask (MSRS labels binarised / merged SAM masks)
    "vif": dict(**_COMMON_FUSION, chan_upscales=(1, 1), enc_layers=(1, 1), dec_layers=(1, 1), ffn_ratios=(2, 2),
                drop_path=0.2, text_dim=1024, text_ds_ratios=(8, 4), mask_kind="binary", mask_channels=1,
                batch_size=10, epochs=200, crop_size=(224, 280), crop_scale=(0.5, 1.0), plain_layers=4),
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


def get_config(task: str, **overrides: Any) -> TaskConfig:
    """Paper configuration of `task` with flat or section `overrides` (`bands=` sets a_channels and out_channels)."""
    if task not in _DEFAULTS:
        raise ValueError(f"get_config: unknown task {task!r}; expected one of {TASKS}")
    routed = route_overrides({**_DEFAULTS[task], **overrides})
    return TaskConfig(task=task, **{s: SECTIONS[s](**routed.get(s, {})) for s in SECTIONS})


# --------------------------------------------------------------------------- training recipes
RecipeName = Literal["paper", "cpu"]
RECIPES: tuple[str, ...] = ("paper", "cpu")
# the budget fields of a recipe; every other key of a recipe entry is a TaskConfig override
_BUDGET = ("steps", "epochs", "ema_decay", "checkpoint_every", "val_every", "val_max_pairs", "val_max_side")


@dataclass(frozen=True)
class TrainRecipe:
    """How one task is trained: a budget (steps or epochs, EMA, checkpoint/validation cadence) plus config overrides.

    ``paper`` is Table 1 (the task config's epochs, batch, crop, lr 1e-3 -> 1e-5 cosine, no overrides); ``cpu``
    is sized for a 2-core machine (about 90 minutes). ``steps`` (when set) overrides ``epochs``. ``overrides``
    are flat ``TaskConfig`` field names (crop, batch, lr, drop path, loss choices justified in
    docs/ablations.md), checked against the sections when the recipe is made; ``apply(cfg)`` applies them.
    Inference is fully convolutional, so the bundled model runs at any size.
    """

    name: str
    steps: int | None = None
    epochs: int | None = None
    ema_decay: float = 0.999
    checkpoint_every: int = 1000
    val_every: int = 1000          # steps between validations of the EMA weights (the best is kept)
    val_max_pairs: int = 16        # validation pairs per dataset
    val_max_side: int = 512        # validation pairs area-downscaled to this longer side
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"TrainRecipe {self.name!r}: give exactly one of steps or epochs")
        for f in ("checkpoint_every", "val_every", "val_max_pairs", "val_max_side"):
            if getattr(self, f) < 1:
                raise ValueError(f"TrainRecipe.{f}: must be >= 1, got {getattr(self, f)}")
        if self.val_every % self.checkpoint_every:  # the validator runs from the checkpoint hook
            raise ValueError(f"TrainRecipe {self.name!r}: val_every ({self.val_every}) must be a multiple of "
                             f"checkpoint_every ({self.checkpoint_every}), else validation runs every "
                             f"{math.lcm(self.val_every, self.checkpoint_every)} steps")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainRecipe.ema_decay: {self.ema_decay} not in [0, 1)")
        route_overrides(self.overrides)  # unknown names raise here

    def apply(self, cfg: TaskConfig) -> TaskConfig:
        """``cfg`` with this recipe's overrides."""
        return cfg.replace(**self.overrides) if self.overrides else cfg

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "overrides"},
                "overrides": {k: _plain(v) for k, v in self.overrides.items()}}


# CPU recipes: 2 shared cores, batch 4, for the U-net of Table 1: about 1.0 s per step at 128x128 (the VIF recipe in
# session 8, data, loss and validation included), 0.5 s at 64x64 (the MIF recipe in session 6, before that work). MIF crops are exact windows of the 256x256 slices (ratio 1: no resampling, so the network sees
# test-time statistics); VIF/MEF/MFF keep the paper's random-resized-crop family (not yet tuned on CPU).
# Keys: the budget fields of TrainRecipe; every other key is a flat TaskConfig override (an "overrides" dict
# may hold more); drop_path is 0 unless given.
# fusion tasks: the per-pixel source-weight head (``fusion_base="weights"``): +0.06 validation Qabf over the paper's
# head after 300 VIF steps (docs/ablations.md)
_WEIGHTS = {"fusion_base": "weights"}
_CPU_RECIPES: dict[str, dict[str, Any]] = {
    # VIF: SSIM weights per image (per pixel: +0.014 validation Qabf at 300 steps, no gain at 2000 and worse on the
    # test sets: docs/ablations.md); 4000 steps: validation peaks at step 2500-3000 (0.7107 with the session-8 code,
    # 0.7112 with the session-9 code; the 2000-step schedule's best 0.7061); 61 min on two threads (session 9)
    "vif": dict(steps=4000, batch_size=4, crop_size=(128, 128), crop_scale=(0.5, 1.0), ema_decay=0.995,
                checkpoint_every=100, val_every=500, overrides=_WEIGHTS),
    # MIF: 64x64 windows (no resampling); at equal CPU time more steps beat larger crops; with the weight head
    # validation peaks early: 600 steps beat the best step of an 1800-step run; SSIM weights per pixel: validation
    # Qabf 0.694 vs 0.679 per image (docs/ablations.md)
    "mif": dict(steps=600, batch_size=4, crop_size=(64, 64), crop_scale=(0.0625, 0.0625), crop_ratio=(1.0, 1.0),
                ema_decay=0.995, checkpoint_every=100, val_every=200,
                overrides={**_WEIGHTS, "ssim_weighting": "pixel"}),
    # MEF: crops near native resolution (2-30% of the image area), not whole images shrunk to 128x128: validation
    # Qabf 0.759 after 500 steps vs 0.711; SSIM weights per pixel: 0.762 (docs/ablations.md)
    "mef": dict(steps=500, batch_size=4, crop_size=(128, 128), crop_scale=(0.02, 0.3), crop_ratio=(0.8, 1.4),
                ema_decay=0.995, checkpoint_every=100, val_every=500,
                overrides={**_WEIGHTS, "ssim_weighting": "pixel"}),
    # MFF: synthetic defocus of the VIF training sets' visible photographs (DATA=../shared/data/train/vif); 3000
    # steps: validation peaks at step 2000 of this schedule (0.7845, above the 2000-step schedule's 0.7826)
    "mff": dict(steps=3000, batch_size=4, crop_size=(128, 128), crop_scale=(0.8, 1.0), crop_ratio=(0.8, 1.4),
                ema_decay=0.995, checkpoint_every=100, val_every=500, overrides={**_WEIGHTS, "synthetic": "defocus"}),
    # pan: reduced-resolution crops of the top half of each shared scene (train/val regions), the bottom half
    # held back for testing (``scene_split="halves"``); one model per band count (``--bands 4`` / ``8``)
    "pan": dict(steps=3000, batch_size=16, crop_size=(32, 32), ema_decay=0.995, checkpoint_every=100, val_every=500,
                overrides={"scene_split": "halves"}),
    "hmif": dict(steps=3000, batch_size=8, crop_size=(32, 32), ema_decay=0.995, checkpoint_every=100,
                 val_every=500),
}


def _cpu_recipe(task: str) -> TrainRecipe:
    entry = dict(_CPU_RECIPES[task])
    overrides = {"drop_path": 0.0, **{k: v for k, v in entry.items() if k not in (*_BUDGET, "overrides")},
                 **entry.get("overrides", {})}
    return TrainRecipe(name="cpu", overrides=overrides, **{k: v for k, v in entry.items() if k in _BUDGET})


def get_recipe(task: str, name: str = "paper") -> TrainRecipe:
    """The ``paper`` (Table 1, from the task config) or ``cpu`` training recipe of ``task``."""
    if task not in _DEFAULTS:
        raise ValueError(f"get_recipe: unknown task {task!r}; expected one of {TASKS}")
    if name == "paper":
        return TrainRecipe(name="paper", epochs=get_config(task).optim.epochs, ema_decay=0.999)
    if name == "cpu":
        rec = _cpu_recipe(task)
        rec.apply(get_config(task))  # values are checked by the sections
        return rec
    raise ValueError(f"get_recipe: unknown recipe {name!r}; expected one of {RECIPES}")


__all__ = ["TASKS", "FUSION_TASKS", "SHARPENING_TASKS", "RECIPES", "SECTIONS", "FIELD_SECTION", "ModelConfig",
           "DataConfig", "LossConfig", "OptimConfig", "GuidanceConfig", "TaskConfig", "TrainRecipe", "get_config",
           "get_recipe", "route_overrides"]
