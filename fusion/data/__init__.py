"""Datasets, layouts, augmentation, batching and the embedded demo data (SPEC section 7, issues 2 and 5)."""
from __future__ import annotations

from fusion.data.collate import collate
from fusion.data.datasets import PairedImageDataset, SpectralDataset, build_dataset
from fusion.data.demo import build_demo_data, ensure_demo_data
from fusion.data.guidance import ManifestMismatchError
from rwkvfusion_io.images import SampleError

__all__ = ["build_dataset", "collate", "build_demo_data", "ensure_demo_data", "PairedImageDataset", "SpectralDataset", "SampleError",
           "ManifestMismatchError"]
