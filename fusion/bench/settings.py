"""Bench settings: the sections, the paper's Table 4 figures, where the real data lives."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SECTIONS: tuple[str, ...] = ("kernels", "cost", "scaling", "speed", "quality", "annotate", "metrics")
PAPER_TABLE4 = {"params_M": 0.352, "GFLOPs": 15.08, "images_per_s": 136.6,
                "images_per_s_with_semantics": 112.7, "device": "NVIDIA RTX 3090", "size": 256}
REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = Path(os.environ.get("RWKVFUSION_SHARED_DATA", REPO.parent / "shared" / "data"))


# ============================================================================ settings
@dataclass
class BenchSettings:
    """What one bench run measures; ``quick_settings()`` gives the tiny sizes used by the tests."""

    cost_size: int = 256
    cost_repeats: int = 3                # forward passes timed per task
    cost_train_repeats: int = 2          # forward+backward passes timed per task (the costly part)
    scaling_sizes: tuple[int, ...] = (64, 128, 256, 512, 1024)
    attention_sizes: tuple[int, ...] = (32, 48, 64, 96, 128, 160, 256)
    scaling_repeats: int = 3
    attn_matrix_cap_gib: float = 3.0     # skip attention sizes whose K x T x T score matrices exceed this
    time_cap_s: float = 60.0             # skip a size whose predicted single pass exceeds this
    max_pairs: int = 8
    max_side: int = 512                  # quality: larger pairs are area-downscaled to this longer side
    pan_full_crop: int = 256             # PAN side of the full-resolution (QNR) crop
    quick: bool = False
    tasks: tuple[str, ...] = ("vif", "mif", "mef", "mff", "pan", "hmif")   # model-cost configurations
    quality_tasks: tuple[str, ...] = ("vif", "mif", "mef", "mff", "pan")
    speed_compile: bool = True           # speed section: also measure torch.compile (slow warm-up)

    @classmethod
    def quick_settings(cls) -> BenchSettings:
        return cls(cost_size=32, cost_repeats=1, cost_train_repeats=1, scaling_sizes=(16, 32), attention_sizes=(16, 32),
                   scaling_repeats=1, time_cap_s=20.0, max_pairs=1, pan_full_crop=128, quick=True,
                   tasks=("vif",), quality_tasks=("vif", "pan"))
