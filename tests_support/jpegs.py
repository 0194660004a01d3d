"""Random-noise JPEG frames for the tests of decoding and shared memory (OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["noise_jpeg"]


def noise_jpeg(seed: int, size: int = 48, quality: int = 92) -> bytes:
    """A ``size`` x ``size`` JPEG of seeded random noise (every frame decodes differently)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(data)
