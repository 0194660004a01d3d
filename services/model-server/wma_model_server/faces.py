"""Face detection and cropping for ``recrop=true`` (frames that are not face crops yet).

Uses OpenCV's frontal-face Haar cascade, whose weights ship inside the
``opencv-python-headless`` wheel (``cv2.data.haarcascades``), so nothing is
downloaded. The largest face is cropped as a square of ``scale`` (1.3, like
DeepfakeBench's crop scale) times the detected box, clipped to the frame.
"""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np

__all__ = ["CROP_SCALE", "crop_largest_face", "detect_largest_face"]

CROP_SCALE = 1.3
_CASCADE_FILE = "haarcascade_frontalface_default.xml"
_local = threading.local()


def _cascade() -> Any:
    # CascadeClassifier is not documented as thread-safe: one per worker thread.
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + _CASCADE_FILE)  # type: ignore[attr-defined]
        if cascade.empty():
            raise RuntimeError(f"OpenCV cascade {_CASCADE_FILE} could not be loaded")
        _local.cascade = cascade
    return cascade


def detect_largest_face(rgb: np.ndarray[Any, Any]) -> tuple[int, int, int, int] | None:
    """``(x, y, w, h)`` of the largest frontal face in an RGB frame, or None."""
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    boxes = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    if len(boxes) == 0:
        return None
    x, y, w, h = max((tuple(int(v) for v in b) for b in boxes), key=lambda b: b[2] * b[3])
    return x, y, w, h


def crop_largest_face(
    rgb: np.ndarray[Any, Any], scale: float = CROP_SCALE
) -> np.ndarray[Any, Any] | None:
    """The square crop around the largest face (``scale`` x its box), or None if no face."""
    box = detect_largest_face(rgb)
    if box is None:
        return None
    x, y, w, h = box
    side = int(round(max(w, h) * scale))
    cx, cy = x + w / 2, y + h / 2
    height, width = rgb.shape[:2]
    left, top = max(0, int(round(cx - side / 2))), max(0, int(round(cy - side / 2)))
    right, bottom = min(width, left + side), min(height, top + side)
    return np.ascontiguousarray(rgb[top:bottom, left:right])
