"""The frame gate shared with the gateway, and decoding as the old server decoded."""

from __future__ import annotations

import io
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image
from wma_model_server.backends.mock import MockBackend
from wma_model_server.exceptions import BadRequestError, LimitExceededError
from wma_wire.frames import FrameLimits, open_frame, validate_frames, validate_pixels
from wma_wire.imaging import decode_image


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


def test_validate_pixels_refuses_frames_over_max_request_pixels_together() -> None:
    limits = FrameLimits(max_files=4, max_frame_pixels=64, max_request_pixels=128)
    validate_pixels((2, 8, 8, 3), limits)  # 128 pixels: at the limit
    with pytest.raises(
        LimitExceededError, match="frames total 192 pixels, over max_request_pixels=128"
    ):
        validate_pixels((3, 8, 8, 3), limits)


def test_max_request_pixels_below_max_frame_pixels_is_refused() -> None:
    with pytest.raises(ValueError, match="max_request_pixels must be >= max_frame_pixels"):
        FrameLimits(max_frame_pixels=100, max_request_pixels=99)


def _jpeg(image: Image.Image, **save: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95, **save)
    return buf.getvalue()


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _photo(width: int = 40, height: int = 24) -> np.ndarray[Any, Any]:
    """A smooth, asymmetric RGB picture (a rotation or a channel swap shows)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) % 97 + 80], -1).astype(np.uint8)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the stored pixels are shown rotated 90 degrees clockwise
    return _jpeg(Image.fromarray(_photo()), exif=exif.tobytes())


def _sixteen_bit_rgb() -> bytes:
    rng = np.random.default_rng(0)
    ok, buf = cv2.imencode(".png", rng.integers(0, 65536, (24, 40, 3), dtype=np.uint16))
    assert ok
    return bytes(buf)


def _sixteen_bit_grey() -> bytes:
    ok, buf = cv2.imencode(".png", (np.arange(24 * 40).reshape(24, 40) * 67).astype(np.uint16))
    assert ok
    return bytes(buf)


FRAMES = {
    "rgb-jpeg": lambda: _jpeg(Image.fromarray(_photo())),
    "rgb-png": lambda: _png(Image.fromarray(_photo())),
    "exif-rotated-jpeg": _exif_rotated,
    "cmyk-jpeg": lambda: _jpeg(Image.fromarray(_photo()).convert("CMYK")),
    "grey-jpeg": lambda: _jpeg(Image.fromarray(_photo()).convert("L")),
    "grey-png": lambda: _png(Image.fromarray(_photo()).convert("L")),
    "rgba-png": lambda: _png(Image.fromarray(_photo()).convert("RGBA")),
    "palette-png": lambda: _png(Image.fromarray(_photo()).convert("P")),
    "16-bit-rgb-png": _sixteen_bit_rgb,
    "16-bit-grey-png": _sixteen_bit_grey,
}


def opencv_rgb(data: bytes) -> np.ndarray[Any, Any]:
    """The old server's decoding: cv2.imdecode(buf, IMREAD_COLOR), BGR -> RGB."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class RecordingBackend(MockBackend):
    """The mock backend, keeping a copy of every frame it is given to prepare."""

    def __init__(self, model_id: str) -> None:
        super().__init__(model_id)
        self.frames: list[np.ndarray[Any, Any]] = []

    def prepare(self, frame: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
        self.frames.append(frame.copy())
        return super().prepare(frame)

    def warmup(self) -> None:
        pass


@pytest.mark.anyio
@pytest.mark.parametrize("kind", list(FRAMES))
async def test_every_frame_reaches_the_model_as_opencv_decodes_it(
    serve: Any, form: Any, kind: str
) -> None:
    data = FRAMES[kind]()
    backend = RecordingBackend("m1")
    async with serve(impl=backend) as client:
        r = await client.post("/check_frame_batch", files=form([data], "image/png"))
    assert r.status_code == 200 and r.json()["num_scored"] == 1
    (seen,) = backend.frames
    expected = opencv_rgb(data)
    assert seen.dtype == np.uint8 and seen.shape == expected.shape
    np.testing.assert_array_equal(seen, expected)
    assert r.json()["probs"] == pytest.approx([expected.mean() / 255], abs=1e-6)


def test_odd_frames_are_converted_the_way_opencv_converts_them() -> None:
    # What the comparison above covers, spelled out where Pillow alone would differ.
    limits = FrameLimits()
    rotated = decode_image(open_frame(_exif_rotated(), "jpeg", limits, 0))
    assert rotated is not None and rotated.shape == (40, 24, 3)  # EXIF applied: portrait
    grey16 = decode_image(open_frame(_sixteen_bit_grey(), "png", limits, 0))
    values = np.arange(24 * 40).reshape(24, 40) * 67
    assert grey16 is not None
    np.testing.assert_array_equal(grey16[..., 0], values >> 8)  # scaled, not clipped to 255
    assert (grey16[..., 0] == grey16[..., 2]).all()


@pytest.mark.anyio
@pytest.mark.parametrize("cut", [2, 200], ids=["end-marker", "half-the-scan"])
async def test_a_truncated_jpeg_is_left_out_although_opencv_would_decode_it(
    serve: Any, png: Any, form: Any, cut: int
) -> None:
    rng = np.random.default_rng(3)
    whole = _jpeg(Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    truncated = whole[:-cut]
    assert opencv_rgb(whole).shape == (32, 32, 3)
    async with serve() as client:
        r = await client.post("/check_frame_batch", files=form([truncated, png(51)]))
    assert r.status_code == 200
    assert r.json()["probs"] == pytest.approx([0.2]) and r.json()["num_frames"] == 2
