"""The Effort backend's preprocessing is the formula it replaced, bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
from wma_model_server.backends.effort import CLIP_MEAN, CLIP_STD, EffortBackend, EffortModel
from wma_model_server.backends.effort_checkpoint import EffortArch


def test_prepare_gives_the_same_bits_as_normalising_the_hwc_frame_and_transposing() -> None:
    arch = EffortArch(32, 1, 2, 64, 14, 56, arcface=False, arcface_s=None)
    backend = EffortBackend("m", EffortModel(arch), "cpu", "float32", "area")
    rng = np.random.default_rng(5)
    for height, width in ((56, 56), (57, 91), (300, 200), (13, 8)):
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for view in (frame, frame[1:, 2:], frame[::-1]):  # crops are views
            pixels = view
            if view.shape[:2] != (56, 56):
                pixels = cv2.resize(view, (56, 56), interpolation=cv2.INTER_AREA)
            old = np.ascontiguousarray(
                ((pixels.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)
            )
            new = backend.prepare(view)
            assert new.dtype == np.float32 and new.flags.c_contiguous
            assert new.shape == old.shape and new.tobytes() == old.tobytes()
