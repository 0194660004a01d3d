"""The mock backend: a deterministic, documented stand-in for a detector (no PyTorch).

A frame's fake probability is ``clip(mean(all decoded 8-bit RGB values) / 255 + bias,
0, 1)``, computed at the frame's original size, so a uniform frame of value ``v``
scores exactly ``v / 255 + bias``. Tests and local stacks choose scores by colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["MockBackend"]


class MockBackend:
    kind = "mock"

    def __init__(self, model_id: str, bias: float = 0.0) -> None:
        self.model_id = model_id
        self.bias = bias

    def prepare(self, frame: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
        # Reduce to the mean here (decode thread) so the batch holds scalars, not frames.
        return np.array([frame.mean(dtype=np.float64)], dtype=np.float64)

    def predict(self, inputs: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        means = np.array([float(x[0]) for x in inputs], dtype=np.float64)
        return np.clip(means / 255.0 + self.bias, 0.0, 1.0).astype(np.float32)

    def warmup(self) -> None:
        self.predict([self.prepare(np.zeros((1, 1, 3), dtype=np.uint8))])
