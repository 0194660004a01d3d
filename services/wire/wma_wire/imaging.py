"""Decoding frames into pixels, as the old server decoded them.

The limits and format checks every frame passes first are shared with the gateway
(:mod:`wma_wire.frames`). The pixels are decoded as the old server decoded them:
``cv2.imdecode(buf, cv2.IMREAD_COLOR)`` (EXIF orientation applied, CMYK, greyscale,
palette and 16-bit images converted to 8-bit BGR, alpha dropped), then BGR to RGB;
stricter on one point: a JPEG without its end-of-image marker after the last scan
(a truncated upload) is left out, not scored on a partly grey image. Synchronous
and CPU-bound: callers on an event loop run it in a worker thread.

Here, not in the model server, because the gateway decodes with it too when its
members share its host (``fanout.shared_memory``): one decoder, the same pixels.
It imports OpenCV (the ``model-server`` extra), so nothing imports this module
unless it decodes.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from wma_wire.frames import OpenedFrame

__all__ = ["decode_image"]

_JPEG_SCAN, _JPEG_END = b"\xff\xda", b"\xff\xd9"


def _jpeg_complete(data: bytes) -> bool:
    # Entropy-coded data cannot hold an unescaped marker, so the last SOS found is
    # the image's last scan (an EXIF thumbnail comes before it).
    # Ending in EOI implies the search below succeeds: checked first, it is O(1).
    return data.endswith(_JPEG_END) or data.find(_JPEG_END, max(data.rfind(_JPEG_SCAN), 0)) >= 0


def decode_image(frame: OpenedFrame | None) -> np.ndarray[Any, np.dtype[np.uint8]] | None:
    """RGB uint8 ``[H, W, 3]`` pixels of a frame from :func:`open_frame`, decoded as
    ``cv2.imdecode(buf, cv2.IMREAD_COLOR)`` decodes it, or None if it cannot be
    decoded (or was not opened, or is a truncated JPEG)."""
    if frame is None or (frame.fmt == "jpeg" and not _jpeg_complete(frame.data)):
        return None
    # IMREAD_COLOR_RGB: the decoder writes RGB itself, the bytes IMREAD_COLOR plus
    # cvtColor(BGR2RGB) give (a test pins it) without the second pass over the pixels.
    rgb = cv2.imdecode(np.frombuffer(frame.data, dtype=np.uint8), cv2.IMREAD_COLOR_RGB)
    # EXIF orientation may swap the sides; anything else means the header lied.
    if rgb is None or sorted(rgb.shape[:2]) != sorted((frame.height, frame.width)):
        return None
    return np.asarray(rgb, dtype=np.uint8)
