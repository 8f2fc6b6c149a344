"""Exposure fusion (T. Mertens, J. Kautz, F. Van Reeth, "Exposure Fusion", Pacific Graphics 2007):
contrast x saturation x well-exposedness weights blended in a Laplacian pyramid; OpenCV's
``cv2.createMergeMertens`` implementation (default exponents 1, 1, 1)."""
from __future__ import annotations

import cv2
import numpy as np

from fusion.baselines._checks import fusion_pair


def exposure_fusion(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mertens exposure fusion of an under- (a) and over-exposed (b) image, HxW or HxWx3 in [0, 1].

    Grey inputs have no saturation, so its exponent is set to 0 (weight = contrast x exposedness).
    Returns float64 of the input shape, clipped to [0, 1].
    """
    a64, b64 = fusion_pair(a, b)
    colour = a64.ndim == 3 and a64.shape[2] == 3
    merge = cv2.createMergeMertens(1.0, 1.0 if colour else 0.0, 1.0)
    # OpenCV expects float inputs on the 0-255 scale and returns [0, 1]
    imgs = [np.ascontiguousarray(np.clip(x, 0.0, 1.0) * 255.0, dtype=np.float32) for x in (a64, b64)]
    if a64.ndim == 3 and a64.shape[2] == 1:
        imgs = [x[..., 0] for x in imgs]
    out = merge.process(imgs).astype(np.float64)
    return np.clip(out.reshape(a64.shape), 0.0, 1.0)
