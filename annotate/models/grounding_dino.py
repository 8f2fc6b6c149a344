"""Grounding DINO open-vocabulary boxes from a prompt of class names (Algorithm 2, 'DINO')."""
from __future__ import annotations

from typing import Any

import numpy as np

from annotate.models.base import Detections, ModelRef, chunks, clip_boxes, load_pretrained

DEFAULT_ID = "IDEA-Research/grounding-dino-base"


def class_token_spans(input_ids: list[int], separator_ids: set[int], special_ids: set[int],
                      n_classes: int) -> list[list[int]]:
    """Token positions of each class in the prompt ``"c1. c2. ... cK."`` (segments between separators)."""
    spans: list[list[int]] = []
    current: list[int] = []
    for pos, tid in enumerate(input_ids):
        if tid in separator_ids:
            if current:
                spans.append(current)
            current = []
        elif tid not in special_ids:
            current.append(pos)
    if current:
        spans.append(current)
    if len(spans) != n_classes:
        raise ValueError(f"Grounding DINO prompt has {len(spans)} class segments for {n_classes} classes "
                         "(class names must not contain '.'; is the prompt longer than max_text_len?)")
    return spans


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (descending score). torchvision is not a dependency."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = (np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0])).clip(0)
        h = (np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1])).clip(0)
        inter = w * h
        union = area[i] + area[rest] - inter
        overlap = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


class GroundingDino:
    """``detect(images, classes) -> list[Detections]``; labels are names from ``classes``.

    A query is kept when its best token probability exceeds ``box_threshold`` (as in transformers'
    ``post_process_grounded_object_detection``); its label is the class whose prompt tokens score highest,
    kept only above ``text_threshold``. Then per-class NMS (``nms_iou``) and the ``max_detections`` best.
    """

    role = "detector"

    def __init__(self, source: str = DEFAULT_ID, *, device: str | None = None, dtype: str | None = None,
                 batch_size: int = 4, box_threshold: float = 0.35, text_threshold: float = 0.25,
                 nms_iou: float | None = 0.7, max_detections: int = 50):
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        loaded = load_pretrained(self.role, source, AutoProcessor, GroundingDinoForObjectDetection, device=device, dtype=dtype)
        self.processor, self.model, self.device, self.dtype = loaded.processor, loaded.model, loaded.device, loaded.dtype
        self.ref: ModelRef = loaded.ref
        self.batch_size = batch_size
        self.box_threshold, self.text_threshold = box_threshold, text_threshold
        self.nms_iou, self.max_detections = nms_iou, max_detections

    def _spans(self, input_ids: list[int], n_classes: int) -> list[list[int]]:
        tok = self.processor.tokenizer
        return class_token_spans(input_ids, set(tok.convert_tokens_to_ids(["."])), set(tok.all_special_ids),
                                 n_classes)

    def detect(self, images: list[Any], classes: list[str]) -> list[Detections]:
        import torch
        from transformers.image_transforms import center_to_corners_format

        if not classes:
            raise ValueError("Grounding DINO needs at least one class name")
        results: list[Detections] = []
        for batch in chunks(list(images), self.batch_size):
            inputs = self.processor(images=batch, text=[list(classes)] * len(batch), return_tensors="pt")
            inputs = inputs.to(self.device, self.dtype)
            with torch.inference_mode():
                out = self.model(**inputs)
            probs = out.logits.float().sigmoid().cpu()             # [B, Q, max_text_len]
            boxes = center_to_corners_format(out.pred_boxes.float().cpu())  # relative xyxy
            for i, im in enumerate(batch):
                spans = self._spans(inputs.input_ids[i].tolist(), len(classes))
                per_class = torch.stack([probs[i][:, s].max(dim=1).values for s in spans], dim=1)  # [Q, K]
                best, label = per_class.max(dim=1)
                keep = (probs[i].max(dim=1).values > self.box_threshold) & (best > self.text_threshold)
                w, h = im.size
                b = (boxes[i][keep] * torch.tensor([w, h, w, h], dtype=torch.float32)).numpy()
                s, lab = best[keep].numpy().astype(np.float32), label[keep].numpy()
                b = clip_boxes(b, w, h)
                if self.nms_iou is not None and len(s):
                    kept = [idx[nms(b[idx], s[idx], self.nms_iou)] for idx in
                            (np.flatnonzero(lab == k) for k in np.unique(lab))]
                    sel = np.concatenate(kept)
                    b, s, lab = b[sel], s[sel], lab[sel]
                order = np.argsort(-s, kind="stable")[: self.max_detections]
                results.append(Detections(b[order], [classes[int(k)] for k in lab[order]], s[order]))
        return results
