"""Classical fusion and pansharpening baselines behind one registry.

``METHODS[name]`` is a :class:`BaselineSpec`; ``get_method(name)`` returns it or raises a ValueError
listing the valid names.  Fusion methods: ``fn(a, b) -> fused`` (HxW or HxWx3 float in [0, 1]);
pan methods: ``fn(ms, pan, ratio) -> fused`` (ms [h, w, C] low-res, pan [H, W], same units in and out).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fusion.baselines.gff import gff
from fusion.baselines.laplacian import laplacian_pyramid_fusion
from fusion.baselines.mertens import exposure_fusion
from fusion.baselines.pan_cs import brovey, gram_schmidt
from fusion.baselines.pan_interp import exp_method
from fusion.baselines.pan_mra import mtf_glp_hpm
from fusion.baselines.simple import average, choose_max
from rwkvfusion_io.tasks import FUSION_TASKS

PAN_TASKS: tuple[str, ...] = ("pan",)


@dataclass(frozen=True)
class BaselineSpec:
    """One classical method: registry name, kind, the tasks it applies to, callable and citation."""

    name: str
    kind: Literal["fusion", "pan"]
    tasks: tuple[str, ...]
    fn: Callable[..., np.ndarray]
    citation: str


METHODS: dict[str, BaselineSpec] = {
    s.name: s
    for s in (
        BaselineSpec("average", "fusion", FUSION_TASKS, average, "pixel-wise mean (Piella 2003)"),
        BaselineSpec("choose-max", "fusion", FUSION_TASKS, choose_max, "pixel-wise maximum (Piella 2003)"),
        BaselineSpec("laplacian", "fusion", FUSION_TASKS, laplacian_pyramid_fusion,
                     "Burt & Adelson 1983, IEEE Trans. Commun. 31(4); choose-max detail, average base"),
        BaselineSpec("gff", "fusion", FUSION_TASKS, gff,
                     "Li, Kang, Hu 2013, Image Fusion With Guided Filtering, IEEE TIP 22(7)"),
        BaselineSpec("mertens", "fusion", ("mef",), exposure_fusion,
                     "Mertens, Kautz, Van Reeth 2007, Exposure Fusion, Pacific Graphics (OpenCV MergeMertens)"),
        BaselineSpec("exp", "pan", PAN_TASKS, exp_method,
                     "upsampled MS, 23-tap interpolator (Aiazzi et al. 2002; Vivone et al. 2015 toolbox)"),
        BaselineSpec("brovey", "pan", PAN_TASKS, brovey,
                     "Gillespie, Kahle, Walker 1987; Vivone et al. 2015 toolbox BT"),
        BaselineSpec("gs", "pan", PAN_TASKS, gram_schmidt,
                     "Laben & Brower 2000, US patent 6,011,875; Vivone et al. 2015 toolbox GS (mode 1)"),
        BaselineSpec("mtf-glp-hpm", "pan", PAN_TASKS, mtf_glp_hpm,
                     "Aiazzi et al. 2006, PE&RS 72(5); Vivone et al. 2015 toolbox MTF_GLP_HPM"),
    )
}


def get_method(name: str) -> BaselineSpec:
    """Return the baseline called ``name`` (case-insensitive, '_' == '-'); ValueError lists valid names."""
    key = name.strip().lower().replace("_", "-")
    if key not in METHODS:
        raise ValueError(f"unknown baseline method {name!r}; valid names: {', '.join(sorted(METHODS))}")
    return METHODS[key]


def methods_for(task: str) -> list[BaselineSpec]:
    """Baselines that apply to ``task`` (vif/mif/mef/mff/pan), in registry order."""
    return [s for s in METHODS.values() if task in s.tasks]


__all__ = ["METHODS", "BaselineSpec", "get_method", "methods_for", "FUSION_TASKS", "PAN_TASKS"]
