"""Resumable data order: a DistributedSampler that can start mid-epoch, and per-sample seeding.

Augmentation randomness is made a function of (seed, epoch, index) so that the batches seen after
``--resume`` are bit-identical to an uninterrupted run, whatever the number of loader workers.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from rwkvfusion_io.images import SampleError


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` yielding ``(epoch, index)`` keys, able to skip the first ``start`` of an epoch."""

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        """Begin at epoch ``epoch`` after skipping its first ``start`` indices of this rank."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())[self.start:]
        epoch = self.epoch
        self.start = 0
        return iter([(epoch, i) for i in indices])

    def __len__(self) -> int:
        return self.num_samples


class WeightedResumableSampler(ResumableSampler):
    """``ResumableSampler`` drawing each epoch's indices with replacement, with probability ``weights``.

    An epoch has the usual length (``len(dataset)`` split over ranks); its draw depends only on (seed,
    epoch), so ``set_position`` resumes it exactly. Used for multi-dataset mixing (``MultiDataset``).
    """

    def __init__(self, dataset: Dataset, weights: list[float], *, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        w = torch.as_tensor(weights, dtype=torch.float64)
        if w.numel() != len(dataset) or not bool((w >= 0).all()) or float(w.sum()) <= 0:  # type: ignore[arg-type]
            raise ValueError(f"WeightedResumableSampler: need {len(dataset)} non-negative weights with a positive "  # type: ignore[arg-type]
                             f"sum, got {w.numel()}")
        self.weights = w

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.total_size, replacement=True, generator=g).tolist()
        indices = drawn[self.rank:self.total_size:self.num_replicas][self.start:]
        epoch = self.epoch
        self.start = 0
        return iter([(epoch, i) for i in indices])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed unique to one sample draw."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0] >> 1)


class SeededSamples(Dataset):
    """Wraps a dataset: item ``(epoch, index)`` is loaded under RNGs seeded from (seed, epoch, index).

    The caller's global RNG states are restored afterwards, so model randomness (drop path, text
    dropout) is unaffected by data loading.  Loading errors are re-raised naming the sample, or with
    ``skip_errors`` returned as an :class:`UnreadableSample` (indices in ``known_bad`` are not read again).
    """

    def __init__(self, dataset: Dataset, seed: int, *, skip_errors: bool = False) -> None:
        self.dataset = dataset
        self.seed = seed
        self.skip_errors = skip_errors
        self.known_bad: dict[int, UnreadableSample] = {}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if not self.skip_errors:
            return self._get(epoch, index)
        if index in self.known_bad:
            return self.known_bad[index]
        try:
            return self._get(epoch, index)
        except SampleLoadError as err:
            cause = err.__cause__ if err.__cause__ is not None else err
            return UnreadableSample(index, sample_name(self.dataset, index), _one_line(cause))

    def _get(self, epoch: int, index: int) -> Any:
        s = sample_seed(self.seed, epoch, index)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                random.seed(s)
                np.random.seed(s % (2**32))
                return load_item(self.dataset, index)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class SampleLoadError(SampleError):
    """Raised by :func:`load_item`: any failure of ``dataset[index]``, prefixed with the sample's name."""


@dataclass(frozen=True)
class UnreadableSample:
    """Stands in for a sample that could not be loaded: its index, name (id) and the reason."""

    index: int
    name: str
    reason: str


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def sample_name(dataset: Dataset, index: int) -> str:
    """The sample's id when the dataset lists records with an ``id``, else ``index N``."""
    seq = getattr(dataset, "samples", None)
    try:
        rid = getattr(seq[index], "id", None) if seq is not None else None
    except Exception:  # noqa: BLE001
        rid = None
    return str(rid) if rid is not None else f"index {index}"


class SkipUnreadable:
    """Collate wrapper: drops :class:`UnreadableSample` entries and lists them under ``"unreadable"``.

    A batch of only unreadable samples is ``{"unreadable": [...]}`` (the trainer skips that step).
    """

    def __init__(self, collate_fn: Callable[[list[Any]], dict[str, Any]] | None) -> None:
        self.collate_fn = collate_fn

    def __call__(self, items: list[Any]) -> dict[str, Any]:
        bad = [x for x in items if isinstance(x, UnreadableSample)]
        good = [x for x in items if not isinstance(x, UnreadableSample)]
        if good:
            if self.collate_fn is None:
                from torch.utils.data import default_collate

                batch = default_collate(good)
            else:
                batch = self.collate_fn(good)
        else:
            batch = {}
        batch["unreadable"] = bad
        return batch


def describe_sample(dataset: Dataset, index: int) -> str:
    """Best-effort name of sample ``index``: its id and source paths when the dataset lists them."""
    for attr in ("samples", "items", "pairs"):
        seq = getattr(dataset, attr, None)
        if seq is not None:
            try:
                entry = seq[index]
            except Exception:  # noqa: BLE001
                continue
            return f"sample {index} ({entry})"
    return f"sample {index}"


def load_item(dataset: Dataset, index: int) -> Any:
    """``dataset[index]`` with any error re-raised as :class:`SampleLoadError` naming the sample."""
    try:
        return dataset[index]
    except SampleLoadError:
        raise
    except Exception as err:  # noqa: BLE001 - re-raised with the sample's name
        raise SampleLoadError(f"{describe_sample(dataset, index)} of {type(dataset).__name__} could not be "
                              f"loaded: {type(err).__name__}: {err}") from err
