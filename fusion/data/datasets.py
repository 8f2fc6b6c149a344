"""Torch datasets over the standard fusion layouts (see ``rwkvfusion_io.layouts``) and spectral files.

Sample dict (tensors float32 unless noted):
- fusion tasks (vif/mif/mef/mff): "a", "b" Y channels [1, H, W] in [0, 1] (a = ir/MRI/under/far,
  b = visible/SPECT-PET-CT/over/near), "cbcr_a", "cbcr_b" [2, H, W] (BT.601, 0.5 for grey sources),
  optional "gt" [1, H, W] (Y of the reference) and "gt_cbcr" [2, H, W];
- pan/hmif: "a" = lms [C, H, W], "b" = PAN [1, H, W] / HR-MSI [c, H, W], "ms" [C, H/r, W/r], optional
  "gt" [C, H, W], "max_value" (DN of 1.0);
- guidance when available: "text" [L, D] + "text_mask" [L] bool; "mask" ([1|2, H, W] float for VIF/MIF,
  [H, W] int64 class map for MEF/MFF). Absent keys mean "run without that guidance";
- "id" str, "paths" dict of str.
Errors: a missing/corrupt file, a size mismatch or a wrong band count raises ``SampleError`` naming the
sample and the file; with ``on_error="skip"`` every sample is test-loaded when the dataset is built and
the bad ones are dropped and listed in ``dataset.skipped`` (id, message).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fusion.config import TaskConfig, get_config
from fusion.data.augment import augment_sample
from fusion.data.guidance import Guidance
from rwkvfusion_io import layouts as L
from rwkvfusion_io.images import (
    SampleError,
    check_finite,
    checked_class_map,
    read_image,
    read_label_map,
    split_y_cbcr,
)
from rwkvfusion_io.spectral import SpectralRecord, file_split, list_h5, list_mat, read_h5, read_mat

TASKS = L.FUSION_TASKS + L.SPECTRAL_TASKS


class _GuidedDataset(Dataset):
    """Shared parts: manifest guidance, augmentation, skip-on-error bookkeeping.

    Subclasses define ``_load(index) -> sample`` (no augmentation) and ``_local_files(record)``.
    """

    task: str
    samples: list

    def _init_common(self, task: str, root: Path, manifest, train: bool, cfg: TaskConfig | None,
                     hash_mismatch: str) -> None:
        if cfg is None:  # no config given: the task's registry config (Table 1)
            cfg = get_config(task)
        self.task, self.root, self.train, self.cfg = task, root, train, cfg
        self.skipped: list[tuple[str, str]] = []
        self.guidance = (Guidance(manifest, task, root, cfg=cfg, hash_mismatch=hash_mismatch)
                         if manifest else None)

    def _attach_guidance(self) -> None:
        if self.guidance is None:
            return
        for rec in self.samples:
            self.guidance.attach(rec.id, rec.key, self._local_files(rec))

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.samples]

    @property
    def unannotated_ids(self) -> list[str]:
        """Samples that run without manifest guidance (no row, error row, or skipped hash mismatch)."""
        return self.ids if self.guidance is None else list(self.guidance.unannotated_ids)

    @property
    def unannotated_count(self) -> int:
        return len(self.unannotated_ids)

    def guidance_summary(self) -> dict[str, int]:
        out = {"samples": len(self.samples), "unannotated": self.unannotated_count, "skipped": len(self.skipped)}
        if self.guidance is not None:
            out.update(self.guidance.summary())
        return out

    def __len__(self) -> int:
        return len(self.samples)

    def _add_guidance(self, sample: dict[str, Any], sample_id: str, hw: tuple[int, int]) -> None:
        if self.guidance is None:
            return
        text = self.guidance.text(sample_id)
        if text is not None:
            sample["text"] = torch.from_numpy(text)
            sample["text_mask"] = torch.ones(text.shape[0], dtype=torch.bool)
        if self.task in L.FUSION_TASKS:  # the manifest's mask replaces a dataset-provided one
            m = self.guidance.mask(sample_id)
            if m is not None:
                sample["mask"] = _fit_mask(torch.from_numpy(m), hw)

    def _finish(self, sample: dict[str, Any], index: int) -> dict[str, Any]:
        if self.train:
            # seeded from the global torch RNG, which the trainer seeds per (seed, epoch, index)
            g = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
            sample = augment_sample(sample, self.task, self.cfg, g)
        return sample

    def _drop_bad(self) -> None:
        """Test-load every sample (no augmentation) and drop the failing ones into ``skipped``."""
        keep = []
        train, self.train = self.train, False
        try:
            for i, rec in enumerate(self.samples):
                try:
                    self._load(i)
                except SampleError as exc:
                    self.skipped.append((rec.id, str(exc)))
                else:
                    keep.append(rec)
        finally:
            self.train = train
        self.samples = keep

    def check(self) -> list[tuple[str, str]]:
        """Load every sample once; returns (id, message) of the failures without changing the dataset."""
        bad = []
        for i, rec in enumerate(self.samples):
            try:
                self._load(i)
            except SampleError as exc:
                bad.append((rec.id, str(exc)))
        return bad

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._finish(self._load(index), index)


def _fit_mask(m: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Resize a manifest mask to the image size by nearest neighbour (manifests store source size)."""
    if tuple(m.shape[-2:]) == tuple(hw):
        return m
    t = m[None, None] if m.dim() == 2 else m[None]
    out = torch.nn.functional.interpolate(t.float(), size=hw, mode="nearest-exact").to(m.dtype)
    return out[0, 0] if m.dim() == 2 else out[0]


class PairedImageDataset(_GuidedDataset):
    """VIF/MIF/MEF/MFF pairs from any layout of ``rwkvfusion_io.layouts`` (Y channel + CbCr)."""

    def __init__(self, task: str, root: str | Path, split: str = "test", *, layout: str = "auto",
                 manifest: str | Path | None = None, train: bool = False, cfg: TaskConfig | None = None,
                 on_error: str = "raise", hash_mismatch: str = "error") -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.split, self.layout = split, layout
        records, problems = L.list_pairs(task, root, split, layout)
        root = Path(root)
        self._init_common(task, root, manifest, train, cfg, hash_mismatch)
        if problems and on_error == "raise":
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise SampleError(f"{problems[0].message}{more}", sample_id=problems[0].id)
        self.skipped.extend((p.id, p.message) for p in problems)
        if not records:
            raise ValueError(f"{root}: no {task} sample pairs found for split {split!r}")
        self.samples: list[L.PairRecord] = records
        if on_error == "skip":
            self._drop_bad()
        self._attach_guidance()

    def _local_files(self, rec: L.PairRecord) -> dict[str, Path | None]:
        return {"a": rec.a, "b": rec.b, "gt": rec.gt}

    def _read(self, rec: L.PairRecord, role: str, path: Path) -> np.ndarray:
        try:
            return read_image(path)
        except SampleError as exc:
            raise SampleError(f"sample {rec.id!r} ({role}): {exc}", sample_id=rec.id, path=path) from exc

    def _load(self, index: int) -> dict[str, Any]:
        rec = self.samples[index]
        a, b = self._read(rec, "a", rec.a), self._read(rec, "b", rec.b)
        if a.shape[:2] != b.shape[:2]:
            raise SampleError(f"sample {rec.id!r}: size mismatch {rec.a} is {a.shape[1]}x{a.shape[0]} but "
                              f"{rec.b} is {b.shape[1]}x{b.shape[0]} (sources must be registered)",
                              sample_id=rec.id, path=rec.b)
        ya, ca = split_y_cbcr(a)
        yb, cb = split_y_cbcr(b)
        sample: dict[str, Any] = {"id": rec.id, "a": torch.from_numpy(ya), "b": torch.from_numpy(yb),
                                  "cbcr_a": torch.from_numpy(ca), "cbcr_b": torch.from_numpy(cb),
                                  "paths": rec.paths()}
        hw = a.shape[:2]
        if rec.gt is not None:
            gt = self._read(rec, "gt", rec.gt)
            if gt.shape[:2] != hw:
                raise SampleError(f"sample {rec.id!r}: size mismatch, ground truth {rec.gt} is "
                                  f"{gt.shape[1]}x{gt.shape[0]}, sources {hw[1]}x{hw[0]}", sample_id=rec.id, path=rec.gt)
            yg, cg = split_y_cbcr(gt)
            sample["gt"], sample["gt_cbcr"] = torch.from_numpy(yg), torch.from_numpy(cg)
        if rec.label is not None:  # dataset masks: MSRS Segmentation_labels (binarised), mask/ folders
            lab = read_label_map(rec.label)
            if lab.shape != hw:
                raise SampleError(f"sample {rec.id!r}: label {rec.label} is {lab.shape}, sources {hw}",
                                  sample_id=rec.id, path=rec.label)
            if self.task in ("vif", "mif"):
                sample["mask"] = torch.from_numpy(np.repeat((lab > 0)[None], 1 if self.task == "vif" else 2, 0)
                                                  .astype(np.float32))
            else:
                sample["mask"] = torch.from_numpy(checked_class_map(lab, self.cfg.guidance.mask_classes, rec.label, rec.id))
        self._add_guidance(sample, rec.id, hw)
        return sample


class SpectralDataset(_GuidedDataset):
    """Pansharpening / HMIF samples from PanCollection-style h5 files or full-resolution .mat scenes."""

    def __init__(self, task: str, root: str | Path, split: str = "test", *, layout: str = "auto",
                 manifest: str | Path | None = None, train: bool = False, cfg: TaskConfig | None = None,
                 on_error: str = "raise", hash_mismatch: str = "error", max_value: float | None = None) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        root = Path(root)
        self._init_common(task, root, manifest, train, cfg, hash_mismatch)
        self.split, self.max_value = split, max_value
        self.ratio = int(self.cfg.data.ratio)
        self.ignored_files: list[tuple[str, str]] = []
        self._scene_cache: dict[str, dict[str, np.ndarray]] = {}
        self.samples: list[SpectralRecord] = []
        scene_split = cfg.data.scene_split if cfg is not None else "file"
        for f in _spectral_files(task, root, split if scene_split == "file" else "all", layout):
            try:
                recs = (list_h5(f, task) if f.suffix.lower() in (".h5", ".hdf5")
                        else list_mat(f, task, split, scene_split=scene_split))
            except SampleError as exc:
                if root.is_file() or on_error == "raise" and f.suffix.lower() != ".mat":
                    raise
                self.ignored_files.append((str(f), str(exc)))  # e.g. a spectral-response .mat beside the scenes
                continue
            for rec in recs:
                why = _unfit(rec, cfg, train)
                if why:  # a scene of another band count (or too small to crop) under a mixed root
                    self.ignored_files.append((str(f), why))
                else:
                    self.samples += [rec] * _patches_per_epoch(rec, cfg, train)
        if not self.samples:
            raise ValueError(f"{root}: no {task} samples for split {split!r} (ignored: {self.ignored_files})")
        self._bands: tuple[int, int] | None = None
        if on_error == "skip":
            self._drop_bad()
        self._attach_guidance()

    def _local_files(self, rec: SpectralRecord) -> dict[str, Path | None]:
        # .mat scenes are hash-checked; h5 containers hold many samples and are joined by id only
        return {"a": rec.path} if rec.index is None else {}

    def _load(self, index: int) -> dict[str, Any]:
        rec = self.samples[index]
        try:
            if rec.index is not None:
                arrs = read_h5(rec, self.task, self.max_value, self.ratio)
            elif rec.id in self._scene_cache:
                arrs = self._scene_cache[rec.id]
            else:  # a full .mat scene: load + Wald-reduce once, then serve random patches from memory
                arrs = read_mat(rec, self.task, self.ratio, self.max_value)
                self._scene_cache[rec.id] = arrs
            for k, v in arrs.items():
                check_finite(np.asarray(v), f"{rec.path}:{k}")
        except (SampleError, OSError, KeyError, ValueError) as exc:
            raise SampleError(f"sample {rec}: {exc}", sample_id=rec.id, path=rec.path) from exc
        bands = (arrs["lms"].shape[0], arrs["b"].shape[0])
        if self._bands is None:
            self._bands = bands
        elif bands != self._bands:
            raise SampleError(f"sample {rec}: wrong band count {bands} (ms, pan/msi), the dataset's first sample "
                              f"has {self._bands}", sample_id=rec.id, path=rec.path)
        if arrs["lms"].shape[1:] != arrs["b"].shape[1:]:
            raise SampleError(f"sample {rec}: size mismatch lms {arrs['lms'].shape[1:]} vs pan/msi "
                              f"{arrs['b'].shape[1:]}", sample_id=rec.id, path=rec.path)
        sample: dict[str, Any] = {"id": rec.id, "a": _tensor(arrs["lms"]), "b": _tensor(arrs["b"]),
                                  "ms": _tensor(arrs["ms"]),
                                  "max_value": float(arrs["max_value"]), "paths": {"source": str(rec.path)}}
        if "gt" in arrs:
            sample["gt"] = _tensor(arrs["gt"])
        self._add_guidance(sample, rec.id, tuple(arrs["b"].shape[1:]))
        return sample

    @property
    def channels(self) -> tuple[int, int]:
        """(bands of ``a``/``gt``, bands of ``b``) read from the first sample."""
        if self._bands is None:
            self._load(0)
        return self._bands  # type: ignore[return-value]


def _unfit(rec: SpectralRecord, cfg: TaskConfig | None, train: bool) -> str | None:
    """Why a .mat scene cannot serve a model of ``cfg`` (its band count; for training, a region smaller than
    the crop), else None."""
    if cfg is None or rec.bands is None:
        return None
    if rec.bands != cfg.model.a_channels:
        return f"{rec.bands} bands, the model has {cfg.model.a_channels} (--bands)"
    crop = cfg.data.crop_size
    if train and crop is not None and rec.rows is not None and rec.cols is not None:
        # the reduced-resolution sample lives on the region's MS grid; the crop is taken on it
        h, w = rec.rows[1] - rec.rows[0], rec.cols[1] - rec.cols[0]
        if h < crop[0] or w < crop[1]:
            return f"region {h}x{w} smaller than the training crop {tuple(crop)}"
    return None


def _patches_per_epoch(rec: SpectralRecord, cfg: TaskConfig | None, train: bool) -> int:
    """Training on a region of a scene: one epoch draws as many random crops as tile the region (at least 1)."""
    crop = cfg.data.crop_size if cfg is not None else None
    if not train or crop is None or rec.rows is None or rec.cols is None:
        return 1
    area = (rec.rows[1] - rec.rows[0]) * (rec.cols[1] - rec.cols[0])
    return max(1, area // (crop[0] * crop[1]))


def _tensor(arr: np.ndarray) -> torch.Tensor:
    """A float32 tensor that owns its memory (cached scenes must not be modified through samples)."""
    return torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))


def _spectral_files(task: str, root: Path, split: str, layout: str) -> list[Path]:
    """A file, ``<split>.h5`` / ``*<split>*.h5``, else every .h5/.mat under ``root``."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist")
    exts = {".h5", ".hdf5"} if layout in ("pancollection", "h5") else {".mat"} if layout == "mat" else {".h5", ".hdf5", ".mat"}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    named = [p for p in files if file_split(p) == split]
    out = named or [p for p in files if file_split(p) == "all"] or files
    if not out:
        raise ValueError(f"{root}: no .h5 or .mat files for {task}")
    return out


def build_dataset(task: str, root: str | Path, split: str = "test", *, layout: str = "auto",
                  manifest: str | Path | None = None, train: bool = False, cfg: TaskConfig | None = None,
                  on_error: str = "raise", hash_mismatch: str = "error", max_value: float | None = None
                  ) -> _GuidedDataset:
    """Dataset of dict samples for ``task`` from ``root`` (any supported layout; the demo data: ``<demo dir>/<task>``).

    ``train`` applies the paper's augmentation (supplement sec. 1) (``fusion.data.augment``); ``cfg`` (a
    ``TaskConfig``; None = ``get_config(task)``) supplies crops and ratio (``cfg.data``), text_dim and
    mask_classes (``cfg.guidance``); ``manifest`` (.parquet file or directory)
    adds text/mask guidance joined by sample id with sha256 checks (``hash_mismatch`` "error"/"skip").
    ``on_error="skip"`` test-loads every sample and drops bad ones (``dataset.skipped``). ``max_value``
    (pan/hmif) overrides the DN of 1.0 (default: the file's attribute, the .mat bit depth, or inferred).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if task in L.SPECTRAL_TASKS:
        return SpectralDataset(task, root, split, layout=layout, manifest=manifest, train=train, cfg=cfg,
                               on_error=on_error, hash_mismatch=hash_mismatch, max_value=max_value)
    return PairedImageDataset(task, root, split, layout=layout, manifest=manifest, train=train, cfg=cfg,
                              on_error=on_error, hash_mismatch=hash_mismatch)
