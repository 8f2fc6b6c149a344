"""Model wrappers: each loads by hub id or local directory through transformers ``from_pretrained``.

- :class:`Florence2` -- detailed captions and caption-to-phrase grounding (``caption``, ``ground``)
- :class:`T5TextEncoder` -- T5 encoder ``last_hidden_state`` of the real tokens (``encode``)
- :class:`GroundingDino` -- open-vocabulary boxes from class names (``detect``)
- :class:`Sam` -- one mask per box prompt (``segment``)

Imports are lazy (transformers is heavy); a wrong local path raises :class:`ModelLoadError` naming it.
"""
from __future__ import annotations

from annotate.models.base import Detections, ModelLoadError, ModelRef, resolve_source
from annotate.models.florence import Florence2
from annotate.models.grounding_dino import GroundingDino
from annotate.models.sam import Sam
from annotate.models.t5 import T5TextEncoder

DEFAULT_MODELS: dict[str, str] = {
    "captioner": "florence-community/Florence-2-large",
    "text_encoder": "google-t5/t5-small",
    "detector": "IDEA-Research/grounding-dino-base",
    "segmenter": "facebook/sam-vit-huge",
}

__all__ = ["DEFAULT_MODELS", "Detections", "Florence2", "GroundingDino", "ModelLoadError", "ModelRef", "Sam",
           "T5TextEncoder", "resolve_source"]
