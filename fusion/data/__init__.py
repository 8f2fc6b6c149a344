"""Datasets, augmentation, batching and the manifest join (the paper's datasets, supplement section 1)."""
from __future__ import annotations

from fusion.data.collate import collate
from fusion.data.datasets import PairedImageDataset, SpectralDataset, build_dataset
from fusion.data.guidance import ManifestMismatchError
from rwkvfusion_io.images import SampleError

__all__ = ["build_dataset", "collate", "PairedImageDataset", "SpectralDataset", "SampleError",
           "ManifestMismatchError"]
