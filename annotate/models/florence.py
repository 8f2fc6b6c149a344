"""Florence-2 (transformers' native Florence2ForConditionalGeneration): detailed captions and
caption-to-phrase grounding (how MEF/MFF objects are found, supplement sec. 2)."""
from __future__ import annotations

from typing import Any

import numpy as np

from annotate.models.base import Detections, ModelRef, chunks, clip_boxes, load_pretrained

DEFAULT_ID = "florence-community/Florence-2-large"


class Florence2:
    """Florence-2 captioner / phrase grounder.

    ``caption(images) -> list[str]`` (one caption per PIL image); ``ground(images, captions) ->
    list[Detections]`` (boxes of the caption's phrases, xyxy pixels, score 1.0: Florence gives none).
    """

    role = "caption"

    def __init__(self, source: str = DEFAULT_ID, *, device: str | None = None, dtype: str | None = None,
                 batch_size: int = 4, caption_task: str = "<MORE_DETAILED_CAPTION>", num_beams: int = 3,
                 max_new_tokens: int = 1024, grounding_task: str = "<CAPTION_TO_PHRASE_GROUNDING>",
                 grounding_num_beams: int = 3, grounding_max_new_tokens: int = 1024,
                 max_caption_tokens: int = 256):
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        loaded = load_pretrained(self.role, source, AutoProcessor, Florence2ForConditionalGeneration, device=device, dtype=dtype)
        self.processor, self.model, self.device, self.dtype = loaded.processor, loaded.model, loaded.device, loaded.dtype
        self.ref: ModelRef = loaded.ref
        self.batch_size = batch_size
        self.caption_task, self.grounding_task = caption_task, grounding_task
        self.num_beams, self.max_new_tokens = num_beams, max_new_tokens
        self.grounding_num_beams, self.grounding_max_new_tokens = grounding_num_beams, grounding_max_new_tokens
        self.max_caption_tokens = max_caption_tokens

    def _generate(self, images: list[Any], prompts: list[str], num_beams: int, max_new_tokens: int,
                  skip_special_tokens: bool) -> list[str]:
        import torch

        inputs = self.processor(text=prompts, images=images, return_tensors="pt", padding=True)
        inputs = inputs.to(self.device, self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                      do_sample=False)
        return self.processor.batch_decode(out, skip_special_tokens=skip_special_tokens)

    def caption(self, images: list[Any]) -> list[str]:
        """Detailed caption of each image (``caption_task``, beam search)."""
        captions: list[str] = []
        for batch in chunks(list(images), self.batch_size):
            texts = self._generate(batch, [self.caption_task] * len(batch), self.num_beams,
                                   self.max_new_tokens, skip_special_tokens=True)
            for text, im in zip(texts, batch):
                parsed = self.processor.post_process_generation(text, task=self.caption_task, image_size=im.size)
                captions.append(" ".join(str(parsed[self.caption_task]).split()))
        return captions

    def _shorten(self, caption: str) -> str:
        # The grounding prompt shares the encoder's positions with the image tokens: cap the caption.
        tok = self.processor.tokenizer
        ids = tok(caption, add_special_tokens=False).input_ids
        return caption if len(ids) <= self.max_caption_tokens else tok.decode(ids[: self.max_caption_tokens])

    def ground(self, images: list[Any], captions: list[str]) -> list[Detections]:
        """Boxes of the phrases of each caption in its image (``grounding_task``)."""
        if len(images) != len(captions):
            raise ValueError(f"ground: {len(images)} images but {len(captions)} captions")
        results: list[Detections] = []
        pairs = list(zip(images, captions))
        for batch in chunks(pairs, self.batch_size):
            prompts = [self.grounding_task + self._shorten(c) for _, c in batch]
            texts = self._generate([im for im, _ in batch], prompts, self.grounding_num_beams,
                                   self.grounding_max_new_tokens, skip_special_tokens=False)
            for text, (im, _) in zip(texts, batch):
                parsed = self.processor.post_process_generation(text, task=self.grounding_task,
                                                                image_size=im.size)[self.grounding_task]
                boxes = np.asarray(parsed.get("bboxes", []), np.float32).reshape(-1, 4)
                labels = [str(x).strip() for x in parsed.get("labels", [])]
                results.append(Detections(clip_boxes(boxes, *im.size), labels, np.ones(len(labels), np.float32)))
        return results
