"""annotate: offline captions, T5 text features, boxes, SAM masks and mask merging into Parquet manifests.

``python -m annotate run`` (:mod:`annotate.runner`) annotates a dataset; ``python -m annotate smoke``
(:mod:`annotate.smoke`) checks an install offline with tiny random-weight models. Pieces:
:mod:`annotate.discover` (sample pairs of a dataset root), :mod:`annotate.config` (per-task vocabularies,
prompts, thresholds, stages; YAML in ``annotate/configs``), :mod:`annotate.models` (Florence-2, T5 encoder,
Grounding DINO, SAM wrappers), :mod:`annotate.pipeline` (rows of manifest schema v1) and
:mod:`annotate.merge` (the paper's Algorithms 1-2).
"""
