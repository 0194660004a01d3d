"""The frame gate shared with the gateway: encoded frames and decoded pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from wma_model_server.exceptions import BadRequestError, LimitExceededError
from wma_model_server.imaging import FrameLimits, validate_frames, validate_pixels


def test_validate_frames_returns_each_frames_format(png: Any, encode_image: Any) -> None:
    jpeg = encode_image(np.zeros((4, 4, 3)), "JPEG")
    assert validate_frames([png(1), jpeg], FrameLimits()) == ["png", "jpeg"]


@pytest.mark.parametrize(
    ("shape", "error", "needle"),
    [
        ((0, 8, 8, 3), BadRequestError, "holds no frames"),
        ((1, 0, 8, 3), BadRequestError, "holds no frames"),
        ((3, 8, 8, 3), LimitExceededError, "3 frames exceed max_files=2"),
        ((1, 8, 9, 3), LimitExceededError, "frames of 9x8 exceed max_frame_pixels=64"),
    ],
)
def test_validate_pixels_refuses_empty_too_many_or_too_large_frames(
    shape: tuple[int, ...], error: type[Exception], needle: str
) -> None:
    limits = FrameLimits(max_files=2, max_frame_pixels=64)
    with pytest.raises(error, match=needle):
        validate_pixels(shape, limits)
    validate_pixels((2, 8, 8, 3), limits)  # at the limits: accepted
