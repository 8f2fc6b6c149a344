"""Per-task annotation configuration (SPEC 5): vocabularies, prompts, thresholds, stages, model ids.

Vocabularies and prompts are configuration: ``annotate/configs/<task>.yaml`` holds each task's values and
:func:`load_config` layers a user YAML file and explicit overrides on top. :func:`config_hash` is the
provenance fingerprint written to every manifest row (runtime settings -- device, dtype, batch size --
are not part of the configuration and do not change it).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rwkvfusion_io.tasks import TASKS

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
ROLES: tuple[str, ...] = ("captioner", "text_encoder", "detector", "segmenter")


@dataclass(frozen=True)
class ModelsConfig:
    """Hub ids or local directories of the four models (the paper's models by default)."""

    captioner: str = "florence-community/Florence-2-large"
    text_encoder: str = "google-t5/t5-small"
    detector: str = "IDEA-Research/grounding-dino-base"
    segmenter: str = "facebook/sam-vit-huge"


@dataclass(frozen=True)
class StagesConfig:
    """Which stages run. ``boxes``: Grounding DINO on class names, Florence-2 phrase grounding of the
    caption, or none. ``merge``: Algorithms 1-2 across the two sources (else instances are concatenated)."""

    caption: bool = True
    encode: bool = True
    boxes: Literal["grounding_dino", "phrase_grounding", "none"] = "grounding_dino"
    segment: bool = True
    merge: bool = True
    sources: tuple[str, ...] = ("a", "b")       # which sources are captioned / detected / segmented


@dataclass(frozen=True)
class CaptionConfig:
    task_prompt: str = "<MORE_DETAILED_CAPTION>"
    num_beams: int = 3
    max_new_tokens: int = 1024


@dataclass(frozen=True)
class GroundingConfig:
    task_prompt: str = "<CAPTION_TO_PHRASE_GROUNDING>"
    num_beams: int = 3
    max_new_tokens: int = 1024
    max_caption_tokens: int = 256                # caption tokens fed to the grounding prompt


@dataclass(frozen=True)
class DetectorConfig:
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    nms_iou: float | None = 0.7
    max_detections: int = 50


@dataclass(frozen=True)
class SegmenterConfig:
    mask_threshold: float = 0.0
    min_area: int = 1                            # masks with fewer pixels are dropped


@dataclass(frozen=True)
class TextConfig:
    max_length: int = 512


@dataclass(frozen=True)
class DatasetLabelsConfig:
    """Use a dataset's own segmentation labels (MSRS ``Segmentation_labels``) instead of generated masks."""

    enabled: bool = False
    dir: str = "Segmentation_labels"
    vocab: tuple[str, ...] = ()                  # label value k >= 1 -> vocab[k - 1]
    binarise: bool = True                        # the release binarises them: one class, "object"


@dataclass(frozen=True)
class AnnotateConfig:
    """Everything that determines the content of a manifest row."""

    task: str
    classes: tuple[str, ...] = ()
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)   # phrase words -> class (grounding)
    stages: StagesConfig = StagesConfig()
    models: ModelsConfig = ModelsConfig()
    caption: CaptionConfig = CaptionConfig()
    grounding: GroundingConfig = GroundingConfig()
    detector: DetectorConfig = DetectorConfig()
    segmenter: SegmenterConfig = SegmenterConfig()
    merge_iou: float = 0.5
    text: TextConfig = TextConfig()
    dataset_labels: DatasetLabelsConfig = DatasetLabelsConfig()

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"annotate config: task must be one of {TASKS}, got {self.task!r}")
        bad = sorted(set(self.stages.sources) - {"a", "b"})
        if bad or not self.stages.sources:
            raise ValueError(f"annotate config: stages.sources must be a non-empty subset of (a, b), got "
                             f"{self.stages.sources}")
        if self.stages.boxes != "none" and not self.stages.segment:
            raise ValueError("annotate config: boxes without segment gives no masks; set stages.segment")
        if self.stages.segment and self.stages.boxes == "none":
            raise ValueError("annotate config: stages.segment needs box prompts (stages.boxes)")
        if self.stages.boxes != "none" and not self.classes:
            raise ValueError(f"annotate config for {self.task}: boxes need a class vocabulary (classes)")
        if self.stages.boxes == "phrase_grounding" and not self.stages.caption:
            raise ValueError("annotate config: phrase grounding needs captions (stages.caption)")
        if self.stages.encode and not self.stages.caption:
            raise ValueError("annotate config: text encoding needs captions (stages.caption)")
        if len(set(self.classes)) != len(self.classes) or any("." in c for c in self.classes):
            raise ValueError(f"annotate config: class names must be unique and contain no '.': {self.classes}")
        # aliases of classes outside the vocabulary (e.g. after replacing `classes`) do not apply
        object.__setattr__(self, "aliases", {c: a for c, a in self.aliases.items() if c in self.classes})
        if not 0.0 < self.merge_iou <= 1.0:
            raise ValueError(f"annotate config: merge_iou must be in (0, 1], got {self.merge_iou}")

    @property
    def class_vocab(self) -> tuple[str, ...]:
        """Class names of the class map (value k >= 1 is ``class_vocab[k - 1]``)."""
        if self.dataset_labels.enabled:
            return ("object",) if self.dataset_labels.binarise else self.dataset_labels.vocab
        return self.classes

    @property
    def needs(self) -> dict[str, bool]:
        """Which model roles this configuration loads."""
        generated = self.stages.segment and not self.dataset_labels.enabled
        return {"captioner": self.stages.caption,
                "text_encoder": self.stages.encode,
                "detector": generated and self.stages.boxes == "grounding_dino",
                "segmenter": generated}

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _merge(base: dict[str, Any], over: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "aliases":
            out[k] = _merge(out[k], v, f"{where}{k}.")
        else:
            out[k] = v
    return out


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"annotate config: unknown keys {[where + k for k in unknown]}")
    kwargs: dict[str, Any] = {}
    for k, v in values.items():
        default = names[k].default
        if dataclasses.is_dataclass(default):
            if not isinstance(v, dict):
                raise ValueError(f"annotate config: {where}{k} must be a mapping, got {v!r}")
            kwargs[k] = _build(type(default), v, f"{where}{k}.")
        elif k == "aliases":
            kwargs[k] = {str(c): tuple(str(a) for a in al) for c, al in (v or {}).items()}
        elif isinstance(v, list):
            kwargs[k] = tuple(v)
        else:
            kwargs[k] = v
    return cls(**kwargs)


def task_defaults(task: str) -> dict[str, Any]:
    """The packaged YAML of ``task`` as a dict."""
    path = CONFIG_DIR / f"{task}.yaml"
    if task not in TASKS or not path.is_file():
        raise ValueError(f"no annotate configuration for task {task!r}; tasks: {TASKS}")
    return yaml.safe_load(path.read_text()) or {}


def load_config(task: str, path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> AnnotateConfig:
    """Task defaults, then the YAML file ``path`` (if given), then ``overrides`` (nested dicts)."""
    values = task_defaults(task)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"annotate config file {p} does not exist")
        user = yaml.safe_load(p.read_text()) or {}
        if not isinstance(user, dict):
            raise ValueError(f"annotate config file {p}: expected a mapping at the top level")
        values = _merge(values, user)
    values = _merge(values, overrides or {})
    if values.get("task", task) != task:
        raise ValueError(f"annotate config says task {values['task']!r} but the run is for task {task!r}")
    values["task"] = task
    return _build(AnnotateConfig, values, "")


def config_hash(cfg: AnnotateConfig, model_refs: dict[str, dict[str, Any]] | None = None) -> str:
    """sha256 of the canonical JSON of ``cfg``; model sources replaced by their provenance when given
    (so a local copy of the same weights gives the same hash wherever it lives)."""
    data = cfg.to_dict()
    if model_refs:
        data["models"] = {role: model_refs.get(role, src) for role, src in data["models"].items()}
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()
