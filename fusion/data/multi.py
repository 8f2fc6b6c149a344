"""Training on several datasets at once: discovery under roots, weighted mixing, a held-out validation split.

``discover_datasets(task, roots)`` walks each root and returns every folder that one of the standard
layouts of ``rwkvfusion_io.layouts`` recognises (the discovery itself is ``layouts.list_pairs``; this module
only walks the tree). ``MultiDataset`` concatenates their ``PairedImageDataset``s, exposes per-sample
sampling weights from ``TaskConfig.data.dataset_weights`` and carves a validation split: groups of samples
(Harvard: the series, i.e. the file name minus its 3-digit slice number, because adjacent slices are
near-duplicates; elsewhere each pair) are assigned to validation by a seeded permutation until a fraction
``TaskConfig.data.val_fraction`` of the samples of every dataset is held out (``split_groups``).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from fusion.config import TaskConfig, dataset_value
from rwkvfusion_io import layouts as L

_SLICE_RE = re.compile(r"^(?P<series>.*?)(?P<slice>\d{3})$")
MAX_DEPTH = 4


@dataclass(frozen=True)
class FoundDataset:
    """One dataset found under a training root: ``name`` is its path relative to the root (posix)."""

    name: str
    root: Path
    records: tuple[L.PairRecord, ...]


def _try_list(task: str, folder: Path, split: str) -> list[L.PairRecord]:
    try:
        records, _problems = L.list_pairs(task, folder, split)
    except (ValueError, FileNotFoundError):
        return []
    return records


def walk_roots(roots: Sequence[str | Path], probe: Callable[[Path], Any]) -> list[tuple[str, Path, Any]]:
    """(name, folder, probe(folder)) for every folder under ``roots`` (depth <= 4, sorted, hidden skipped) where
    ``probe`` returns a truthy value; such a folder's sub-folders are not visited. ``name`` is the folder's path
    relative to its root (the root's own name for the root). Missing roots raise ``FileNotFoundError``; two
    folders of one name raise ``ValueError``."""
    found: list[tuple[str, Path, Any]] = []
    for root in (Path(r) for r in roots):
        if not root.is_dir():
            raise FileNotFoundError(f"training root {root} does not exist or is not a directory")

        def walk(folder: Path, depth: int, root: Path = root) -> None:
            value = probe(folder)
            if value:
                rel = folder.relative_to(root).as_posix()
                found.append((root.name if rel == "." else rel, folder, value))
                return
            if depth >= MAX_DEPTH:
                return
            for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                walk(sub, depth + 1, root)

        walk(root, 0)
    names = [n for n, _, _ in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two training datasets share a name: {names}; pass roots with distinct folder names")
    return found


def discover_datasets(task: str, roots: Sequence[str | Path], split: str = "train") -> list[FoundDataset]:
    """Every folder under ``roots`` (depth <= 4) holding a recognised ``task`` layout, in sorted order.

    A root that is itself a dataset is returned alone (its sub-folders are its roles, not datasets).
    Raises ``ValueError`` naming the roots when nothing is found.
    """
    found = [FoundDataset(name, folder, tuple(records))
             for name, folder, records in walk_roots(roots, lambda f: _try_list(task, f, split))]
    if not found:
        hint = ("; to train on synthetic defocus of all-in-focus photographs (e.g. the vi/ folders of VIF sets) "
                "use --recipe cpu or the override synthetic='defocus'" if task == "mff" else "")
        raise ValueError(f"no {task} dataset found under {[str(r) for r in roots]} (known layouts: "
                         f"{', '.join(L.LAYOUTS[1:])}){hint}")
    return found


def group_key(dataset_name: str, sample_id: str) -> str:
    """Validation group of a sample: Harvard slices group by series (``<series><3-digit slice>``)."""
    if "harvard" in dataset_name.lower():
        m = _SLICE_RE.match(sample_id)
        if m and m["series"]:
            return m["series"]
    return sample_id


def split_groups(keys: Iterable[str], fraction: float, seed: int = 0) -> set[str]:
    """The validation groups of one dataset, given the group key of each of its samples.

    Groups are visited in a permutation (seeded with ``seed``, independent of the training seed) of the
    sorted keys and taken while the held-out samples stay within twice the target ``fraction * n``, until
    the target is reached. A dataset whose every group is larger than that (Harvard PET-MRI: two series)
    or that has one group keeps everything for training.
    """
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    uniq = sorted(counts)
    if fraction <= 0 or len(uniq) < 2:
        return set()
    target = fraction * sum(counts.values())
    chosen: set[str] = set()
    total = 0
    for i in np.random.default_rng(seed).permutation(len(uniq)):
        k = uniq[i]
        if total + counts[k] <= max(2.0 * target, 1.0) and len(chosen) < len(uniq) - 1:
            chosen.add(k)
            total += counts[k]
        if total >= target:
            break
    return chosen


def weight_for(name: str, weights: dict[str, float]) -> float:
    """The sampling weight of dataset ``name`` in ``weights`` (``dataset_value``), else 1."""
    return float(dataset_value(name, weights, 1.0))


class MultiDataset(Dataset):
    """Several paired-image datasets as one (``split`` "train" or "val" of the carved split).

    Sample ids become ``<dataset name>/<id>``. ``sample_weights`` (one float per sample) gives each dataset
    a total weight ``TaskConfig.data.dataset_weights[name]`` (default 1) spread evenly over its samples;
    ``datasets`` lists (name, size, weight). ``samples`` holds the records, like ``PairedImageDataset``.
    """

    def __init__(self, task: str, roots: Sequence[str | Path], split: str = "train", *, cfg: TaskConfig,
                 train: bool = False) -> None:
        from fusion.data.datasets import PairedImageDataset

        if split not in ("train", "val"):
            raise ValueError(f"MultiDataset split must be 'train' or 'val', got {split!r}")
        if task not in L.FUSION_TASKS:
            raise ValueError(f"MultiDataset: task {task!r} is not a paired-image task {L.FUSION_TASKS}")
        self.task, self.split, self.cfg, self.train = task, split, cfg, train
        weights = dict(cfg.data.dataset_weights)
        fraction = float(cfg.data.val_fraction)
        self.parts: list[tuple[str, Dataset, list[int]]] = []
        self.datasets: list[tuple[str, int, float]] = []
        for found in discover_datasets(task, roots):
            ds = PairedImageDataset(task, found.root, "train", train=train, cfg=cfg)
            val = split_groups((group_key(found.name, r.id) for r in ds.samples), fraction, cfg.data.val_seed)
            keep = [i for i, r in enumerate(ds.samples) if (group_key(found.name, r.id) in val) == (split == "val")]
            if not keep:
                continue
            self.parts.append((found.name, ds, keep))
            self.datasets.append((found.name, len(keep), weight_for(found.name, weights)))
        if not self.parts:
            raise ValueError(f"{[str(r) for r in roots]}: the {split} split of the {task} datasets is empty")
        self._index = [(p, i) for p, (_, _, keep) in enumerate(self.parts) for i in keep]
        self.samples = [self.parts[p][1].samples[i] for p, i in self._index]

    @property
    def ids(self) -> list[str]:
        return [f"{self.parts[p][0]}/{self.parts[p][1].samples[i].id}" for p, i in self._index]

    @property
    def sample_weights(self) -> list[float]:
        """Per-sample sampling weight (dataset weight / dataset size)."""
        per = {name: w / n for name, n, w in self.datasets}
        return [per[self.parts[p][0]] for p, _ in self._index]

    def guidance_summary(self) -> dict[str, Any]:
        return {"datasets": {name: n for name, n, _ in self.datasets}, "samples": len(self), "unannotated": len(self)}

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        p, i = self._index[index]
        name, ds, _ = self.parts[p]
        sample = ds[i]
        sample["id"] = f"{name}/{sample['id']}"
        return sample


def training_sets(task: str, roots: Sequence[str | Path], split: str, *, cfg: TaskConfig, train: bool = False
                  ) -> Dataset:
    """The ``split`` ("train" / "val") of the training roots: a ``MultiDataset``, or for
    ``cfg.data.synthetic == "defocus"`` (MFF) the synthetic pairs of ``fusion.data.defocus.DefocusDataset``."""
    if cfg.data.synthetic == "defocus":
        if task != "mff":
            raise ValueError(f"synthetic='defocus' makes multi-focus pairs; task {task!r} cannot use it")
        from fusion.data.defocus import DefocusDataset

        return DefocusDataset(roots, split, cfg=cfg, train=train)
    return MultiDataset(task, roots, split, cfg=cfg, train=train)


def is_multi_root(task: str, roots: Sequence[str | Path]) -> bool:
    """True when ``roots`` should train through ``MultiDataset``: several roots, or one root that is not
    itself a single recognised dataset (e.g. ``train/vif`` holding msrs/, roadscene/, llvip/)."""
    if task not in L.FUSION_TASKS:
        return False
    if len(roots) != 1:
        return True
    root = Path(roots[0])
    return root.is_dir() and not _try_list(task, root, "train")


__all__ = ["FoundDataset", "MultiDataset", "training_sets", "walk_roots", "discover_datasets", "group_key", "split_groups", "weight_for",
           "is_multi_root"]
