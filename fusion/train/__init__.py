"""Training, evaluation and inference for the fusion network.

``Trainer`` runs the optimisation loop (AdamW + cosine, EMA, DDP, exact resume);
``evaluate`` fuses a test split and scores it; ``inference`` fuses image files.
"""
from fusion.train.trainer import Trainer, TrainSettings

__all__ = ["Trainer", "TrainSettings"]
