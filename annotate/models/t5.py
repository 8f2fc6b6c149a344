"""T5 encoder text features: ``last_hidden_state`` of the real tokens, max 512 tokens (supplement sec. 2)."""
from __future__ import annotations

import numpy as np

from annotate.models.base import ModelRef, chunks, load_pretrained

DEFAULT_ID = "google-t5/t5-small"


class T5TextEncoder:
    """``encode(texts) -> list[np.ndarray]``: one ``[L, D]`` float16 array per text, padding removed."""

    role = "text_encoder"

    def __init__(self, source: str = DEFAULT_ID, *, device: str | None = None, dtype: str | None = None,
                 batch_size: int = 16, max_length: int = 512):
        from transformers import AutoTokenizer, T5EncoderModel

        loaded = load_pretrained(self.role, source, AutoTokenizer, T5EncoderModel, device=device, dtype=dtype)
        self.tokenizer, self.model, self.device, self.dtype = loaded.processor, loaded.model, loaded.device, loaded.dtype
        self.ref: ModelRef = loaded.ref
        self.batch_size, self.max_length = batch_size, max_length

    @property
    def dim(self) -> int:
        return int(self.model.config.d_model)

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        import torch

        out: list[np.ndarray] = []
        for batch in chunks(list(texts), self.batch_size):
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
            hidden = hidden.float().cpu().numpy()
            real = enc.attention_mask.bool().cpu().numpy()  # works for either padding side
            out.extend(np.ascontiguousarray(h[m]).astype(np.float16) for h, m in zip(hidden, real))
        return out
