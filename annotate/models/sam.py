"""SAM with box prompts, one mask per box (Algorithm 2, 'Seg')."""
from __future__ import annotations

from typing import Any

import numpy as np

from annotate.models.base import ModelRef, chunks, load_pretrained

DEFAULT_ID = "facebook/sam-vit-huge"


class Sam:
    """``segment(images, boxes) -> list[np.ndarray]``: ``[N_i, H_i, W_i]`` bool masks, one per box."""

    role = "segmenter"

    def __init__(self, source: str = DEFAULT_ID, *, device: str | None = None, dtype: str | None = None,
                 batch_size: int = 4, boxes_per_batch: int = 64, mask_threshold: float = 0.0):
        from transformers import AutoProcessor, SamModel

        loaded = load_pretrained(self.role, source, AutoProcessor, SamModel, device=device, dtype=dtype)
        self.processor, self.model, self.device, self.dtype = loaded.processor, loaded.model, loaded.device, loaded.dtype
        self.ref: ModelRef = loaded.ref
        self.batch_size, self.boxes_per_batch, self.mask_threshold = batch_size, boxes_per_batch, mask_threshold

    def segment(self, images: list[Any], boxes: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        if len(images) != len(boxes):
            raise ValueError(f"segment: {len(images)} images but {len(boxes)} box sets")
        out: list[np.ndarray] = []
        for batch in chunks(list(zip(images, boxes)), self.batch_size):
            ims = [im for im, _ in batch]
            inputs = self.processor(images=ims, return_tensors="pt")
            with torch.inference_mode():
                emb = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device, self.dtype))
            for i, (im, bx) in enumerate(batch):
                bx = np.asarray(bx, np.float32).reshape(-1, 4)
                w, h = im.size
                if len(bx) == 0:
                    out.append(np.zeros((0, h, w), bool))
                    continue
                # Box prompts live in the resized frame: scale by reshaped / original size (SamProcessor's rule).
                (rh, rw), (oh, ow) = inputs["reshaped_input_sizes"][i].tolist(), inputs["original_sizes"][i].tolist()
                scaled = bx * np.asarray([rw / ow, rh / oh, rw / ow, rh / oh], np.float32)
                masks = []
                for part in chunks(list(range(len(bx))), self.boxes_per_batch):
                    prompt = torch.as_tensor(scaled[part])[None].to(self.device, self.dtype)  # [1, n, 4]
                    with torch.inference_mode():
                        res = self.model(image_embeddings=emb[i:i + 1], input_boxes=prompt, multimask_output=False)
                    m = self.processor.post_process_masks(res.pred_masks.float().cpu(), inputs["original_sizes"][i:i + 1],
                                                          inputs["reshaped_input_sizes"][i:i + 1],
                                                          mask_threshold=self.mask_threshold)[0]
                    masks.append(m[:, 0].numpy().astype(bool))       # [n, H, W]
                out.append(np.concatenate(masks, axis=0))
        return out
