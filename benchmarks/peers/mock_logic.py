"""The mock model's logic, as ``wma_model_server.backends.mock`` scores a frame:
``cv2.imdecode(buf, IMREAD_COLOR)``, BGR to RGB, mean of every 8-bit value / 255.

Shared by the KServe and LitServe servers of the serving benchmark (run in the
peers' own venv, ``build/peers-venv``), so all three servers do the same work.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np


def score_b64(images: list[str]) -> list[float]:
    """Fake probabilities of base64-encoded JPEG/PNG frames (-1.0 where undecodable)."""
    probs = []
    for text in images:
        buf = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if bgr is None:
            probs.append(-1.0)
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        probs.append(float(np.clip(rgb.mean(dtype=np.float64) / 255.0, 0.0, 1.0)))
    return probs
