"""The mock backend: a deterministic, documented stand-in for a detector (no PyTorch).

A frame's fake probability is ``clip(mean(all decoded 8-bit RGB values) / 255 + bias,
0, 1)``, computed at the frame's original size, so a uniform frame of value ``v``
scores exactly ``v / 255 + bias``. Tests and local stacks choose scores by colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

__all__ = ["MockBackend"]


class MockBackend:
    kind = "mock"

    def __init__(self, model_id: str, bias: float = 0.0) -> None:
        self.model_id = model_id
        self.bias = bias

    def prepare(self, frame: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
        # Reduce to the mean here (decode thread) so the batch holds scalars, not frames.
        # OpenCV's sum of 8-bit values is exact (an integer below 2**53), so dividing it
        # by the count is bit for bit numpy's float64 mean, ~18x faster on a 224 px crop.
        if frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8:
            total = sum(cv2.sumElems(frame)[:3])
            return np.array([total / frame.size], dtype=np.float64)
        return np.array([frame.mean(dtype=np.float64)], dtype=np.float64)

    def predict(self, inputs: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        means = np.array([float(x[0]) for x in inputs], dtype=np.float64)
        return np.clip(means / 255.0 + self.bias, 0.0, 1.0).astype(np.float32)

    def warmup(self) -> None:
        self.predict([self.prepare(np.zeros((1, 1, 3), dtype=np.uint8))])
