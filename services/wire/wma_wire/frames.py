"""Frame limits and format sniffing: the one gate every frame passes, on both sides.

The gateway applies :func:`validate_frames` before its fan-out and the model server
before it decodes, so a request the gateway accepts is never refused by a member;
:func:`validate_pixels` is the same gate for already-decoded frames (OIP input
``pixels``). Formats are recognised by magic bytes; image dimensions are read from
the header *before* the pixels are decoded, so a decompression bomb is refused
without being expanded (Pillow reads the header). Decoding the pixels is
:mod:`wma_wire.imaging`'s. Frames are never written anywhere. All
functions are synchronous and CPU-bound: callers on an event loop run them in a
worker thread.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from wma_wire.errors import BadRequestError, LimitExceededError, UnsupportedFormatError

__all__ = [
    "FrameLimits",
    "OpenedFrame",
    "check_frames",
    "check_request_pixels",
    "open_frame",
    "sniff_format",
    "validate_frames",
    "validate_pixels",
]

_MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG"}
_U16 = struct.Struct(">H")
_SOF = struct.Struct(">BHHB")  # precision, height, width, components


@dataclass(frozen=True)
class OpenedFrame:
    """An encoded frame whose header passed the limits: its bytes, format and size."""

    data: bytes
    fmt: str
    width: int
    height: int


class FrameLimits(BaseModel):
    """Per-request limits on frames; each breach is a 4xx naming the limit."""

    model_config = ConfigDict(frozen=True)

    max_files: int = Field(default=64, ge=1, description="frames per request")
    max_file_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1, description="bytes per encoded frame"
    )
    max_request_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="bytes per request body"
    )
    # A full-HD webcam frame (recrop=true detects the face in it); a face crop is a
    # few hundred pixels a side. Decoding is paid on every member: no small request
    # may buy seconds of CPU (8 PNGs of 4096x4096 are 393 KB and 134 Mpx).
    max_frame_pixels: int = Field(
        default=1920 * 1080, ge=1, description="width*height of one decoded frame"
    )
    # 2**25: 16 full-HD frames, or every one of max_files frames at 724x724.
    max_request_pixels: int = Field(
        default=2**25, ge=1, description="width*height summed over a request's frames"
    )

    @model_validator(mode="after")
    def _below_pillow_guard(self) -> FrameLimits:
        # Above Pillow's own bomb threshold Pillow warns or raises before we see the size.
        guard = Image.MAX_IMAGE_PIXELS
        if guard is not None and self.max_frame_pixels > guard:
            raise ValueError(f"max_frame_pixels must be <= {guard} (Pillow's bomb guard)")
        if self.max_request_pixels < self.max_frame_pixels:
            raise ValueError("max_request_pixels must be >= max_frame_pixels")
        return self


def sniff_format(data: bytes) -> str | None:
    """``"jpeg"`` or ``"png"`` from the magic bytes, else None."""
    for magic, name in _MAGIC.items():
        if data.startswith(magic):
            return name
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a plain baseline/progressive JPEG from its SOF marker, walking
    the marker segments up to the first scan; None for anything unusual (Pillow decides)."""
    size = None
    offset, end = 2, len(data)
    while offset + 4 <= end:
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker == 0xDA:  # start of scan: the header is complete
            return size
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length: unusual before a scan
            return None
        (length,) = _U16.unpack_from(data, offset + 2)
        if length < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if length < 8 or offset + 10 > end:
                return None
            precision, height, width, components = _SOF.unpack_from(data, offset + 4)
            if size is not None or precision != 8 or components not in (1, 3, 4):
                return None
            if width == 0 or height == 0:
                return None
            size = (width, height)
        offset += 2 + length
    return None


def _header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) from the header, as Pillow reads it; None if it is unreadable."""
    if fmt == "jpeg":
        # A few microseconds instead of Pillow's ~30 (it parses every table); the same
        # size wherever it answers (tests compare them), Pillow for everything else.
        fast = _jpeg_size(data)
        if fast is not None:
            return fast
    try:
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]]) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError):
        return None
    return width, height


def open_frame(data: bytes, fmt: str, limits: FrameLimits, index: int) -> OpenedFrame | None:
    """Read a frame's header (not its pixels) and check its pixel count.

    ``fmt`` is its :func:`sniff_format`; ``index`` names the frame in a 413.
    None if the header is unreadable (the frame is then undecodable, not refused).
    """
    try:
        size = _header_size(data, fmt)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise LimitExceededError(
            f"frame {index} exceeds max_frame_pixels={limits.max_frame_pixels}"
        ) from None
    if size is None:
        return None
    width, height = size
    if width * height > limits.max_frame_pixels:
        raise LimitExceededError(
            f"frame {index} is {width}x{height} pixels, over "
            f"max_frame_pixels={limits.max_frame_pixels}"
        )
    return OpenedFrame(data, fmt, width, height)


def check_request_pixels(opened: Sequence[OpenedFrame | None], limits: FrameLimits) -> None:
    """:class:`LimitExceededError` (413) when the frames' header sizes sum past
    ``max_request_pixels``; an unreadable header (None) counts nothing."""
    total = sum(f.width * f.height for f in opened if f is not None)
    if total > limits.max_request_pixels:
        raise LimitExceededError(
            f"frames total {total} pixels, over max_request_pixels={limits.max_request_pixels}"
        )


def check_frames(frames: Sequence[bytes], limits: FrameLimits) -> list[str]:
    """The checks that need no image parsing: count, sizes and format; each frame's format.

    Raises :class:`BadRequestError` (400) for no frames or an empty frame,
    :class:`LimitExceededError` (413) for a count or size limit and
    :class:`UnsupportedFormatError` (415) for a frame that is not JPEG or PNG.
    """
    if not frames:
        raise BadRequestError("no frames: send at least one JPEG or PNG frame")
    if len(frames) > limits.max_files:
        raise LimitExceededError(f"{len(frames)} frames exceed max_files={limits.max_files}")
    total = sum(len(f) for f in frames)
    if total > limits.max_request_bytes:
        raise LimitExceededError(
            f"frames total {total} bytes, over max_request_bytes={limits.max_request_bytes}"
        )
    formats: list[str] = []
    for index, data in enumerate(frames):
        if not data:
            raise BadRequestError(f"frame {index} is empty")
        if len(data) > limits.max_file_bytes:
            raise LimitExceededError(
                f"frame {index} is {len(data)} bytes, over max_file_bytes={limits.max_file_bytes}"
            )
        fmt = sniff_format(data)
        if fmt is None:
            raise UnsupportedFormatError(f"frame {index} is not a JPEG or PNG image")
        formats.append(fmt)
    return formats


def validate_frames(frames: Sequence[bytes], limits: FrameLimits) -> list[str]:
    """:func:`check_frames`, then each header's dimensions; return each frame's format.

    Raises as :func:`check_frames` does, and :class:`LimitExceededError` (413) for a
    frame over ``max_frame_pixels`` or frames over ``max_request_pixels``. A frame
    whose header cannot be parsed passes: it is reported as undecodable later.
    """
    formats = check_frames(frames, limits)
    opened = [
        open_frame(data, fmt, limits, index)
        for index, (data, fmt) in enumerate(zip(frames, formats, strict=True))
    ]
    check_request_pixels(opened, limits)
    return formats


def validate_pixels(shape: Sequence[int], limits: FrameLimits) -> None:
    """Check decoded frames of ``shape`` ``[N, H, W, 3]`` against the count and pixel limits.

    Raises :class:`BadRequestError` (400) for no frames or empty frames and
    :class:`LimitExceededError` (413) for ``max_files``, ``max_frame_pixels`` or
    ``max_request_pixels``.
    """
    n, height, width = shape[:3]
    if n == 0 or height == 0 or width == 0:
        raise BadRequestError("input 'pixels' holds no frames")
    if n > limits.max_files:
        raise LimitExceededError(f"{n} frames exceed max_files={limits.max_files}")
    if height * width > limits.max_frame_pixels:
        raise LimitExceededError(
            f"frames of {width}x{height} exceed max_frame_pixels={limits.max_frame_pixels}"
        )
    if n * height * width > limits.max_request_pixels:
        raise LimitExceededError(
            f"frames total {n * height * width} pixels, over "
            f"max_request_pixels={limits.max_request_pixels}"
        )
