"""The mock backend's fast mean is numpy's float64 mean, bit for bit (the oracle's number)."""

from __future__ import annotations

import numpy as np
from wma_model_server.backends.mock import MockBackend


def test_the_mock_score_is_numpys_mean_bit_for_bit_on_any_frame_layout() -> None:
    backend = MockBackend("m1", bias=0.125)
    rng = np.random.default_rng(11)
    frames = [np.full((1920, 1080, 3), 255, dtype=np.uint8), np.zeros((1, 1, 3), np.uint8)]
    for _ in range(300):
        height, width = (int(v) for v in rng.integers(1, 300, 2))
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        frames += [frame, frame[height // 3 :, width // 4 :], frame[::-1, ::2]]  # views too
    for frame in frames:
        expected = np.float64(frame.mean(dtype=np.float64))
        (prepared,) = backend.prepare(frame)
        assert prepared == expected  # exact, not approx
        (prob,) = backend.predict([backend.prepare(frame)])
        assert prob == np.float32(np.clip(expected / 255.0 + 0.125, 0.0, 1.0))
