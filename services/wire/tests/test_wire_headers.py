"""The frame header reader: its fast JPEG path reports the size Pillow reports, or defers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from wma_wire.frames import FrameLimits, _jpeg_size, open_frame


def _pillow_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            return image.size
    except (OSError, SyntaxError, ValueError):
        return None


def _jpegs() -> list[bytes]:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    image = Image.fromarray(np.repeat(np.repeat(pixels, 3, axis=0), 2, axis=1))
    orientation = Image.Exif()
    orientation[0x0112] = 6  # rotated: the header size is the stored one
    out = []
    for mode in ("L", "RGB", "CMYK"):
        for options in (
            {},
            {"progressive": True},
            {"optimize": True, "quality": 20},
            {"subsampling": 0},
            {"exif": orientation},
        ):
            buf = io.BytesIO()
            image.convert(mode).save(buf, "JPEG", **options)
            out.append(buf.getvalue())
    return out


JPEGS = _jpegs()


def _damaged() -> list[bytes]:
    rng = np.random.default_rng(4)
    out = []
    for data in JPEGS[:5]:
        out += [data[:cut] for cut in (3, 8, 40, 150, len(data) // 2)]
        for _ in range(4):
            flipped = bytearray(data)
            flipped[int(rng.integers(2, 400))] ^= 0xFF
            out.append(bytes(flipped))
    out.append(b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10\x03" + b"\x00" * 9)  # height 0
    return out


@pytest.mark.parametrize("data", JPEGS + _damaged())
def test_the_fast_jpeg_header_size_is_pillows_wherever_it_answers(data: bytes) -> None:
    fast = _jpeg_size(data)
    assert fast is None or fast == _pillow_size(data)


def test_the_fast_path_answers_for_ordinary_jpegs_and_open_frame_agrees() -> None:
    limits = FrameLimits()
    for index, data in enumerate(JPEGS):
        assert _jpeg_size(data) == (106, 111)
        opened = open_frame(data, "jpeg", limits, index)
        assert opened is not None and (opened.width, opened.height) == (106, 111)
