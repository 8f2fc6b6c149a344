"""fusion: the RWKVFusion network, training, evaluation and metrics.

`from fusion import build_model` is resolved lazily so that `import fusion` stays cheap (no torch import).
"""
from __future__ import annotations

from typing import Any

__all__ = ["build_model"]


def __getattr__(name: str) -> Any:
    if name == "build_model":
        from fusion.model.build import build_model

        return build_model
    raise AttributeError(f"module 'fusion' has no attribute {name!r}")
