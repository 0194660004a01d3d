"""Parsing the legacy ``multipart/form-data`` upload entirely in memory.

Starlette's form parser spools large parts to temporary files; frames are
biometric data and must never touch the disk, so the body (already bounded by
``max_request_bytes``) is parsed here with ``python_multipart`` callbacks.
"""

from __future__ import annotations

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from wma_model_server.exceptions import (
    BadRequestError,
    LimitExceededError,
    UnsupportedFormatError,
)

__all__ = ["ALLOWED_PART_TYPES", "parse_frame_parts"]

# Declared part types accepted (the bytes are then checked by magic number);
# no Content-Type or application/octet-stream is left to the magic check.
ALLOWED_PART_TYPES = {"image/jpeg", "image/jpg", "image/png", "application/octet-stream", ""}


class _Part:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.data = bytearray()


def parse_frame_parts(
    body: bytes, content_type: str, *, field: str = "files", max_parts: int
) -> list[bytes]:
    """The bytes of every part named ``field``, in order; 415 for a non-image part."""
    ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise BadRequestError("expected a multipart/form-data body with 'files' parts")
    parts: list[_Part] = []
    name, value = bytearray(), bytearray()

    def on_part_begin() -> None:
        if len(parts) >= max_parts * 2 + 16:  # generous: other fields are ignored, not stored
            raise LimitExceededError(f"too many form parts (max_files={max_parts})")
        parts.append(_Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.extend(data[start:end])

    def on_header_end() -> None:
        parts[-1].headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        name.clear()
        value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data.extend(data[start:end])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise BadRequestError(f"malformed multipart body: {exc}") from None
    frames: list[bytes] = []
    for part in parts:
        _, disposition = parse_options_header(part.headers.get("content-disposition", ""))
        if disposition.get(b"name") != field.encode():
            continue
        declared = parse_options_header(part.headers.get("content-type", ""))[0].decode().lower()
        if declared not in ALLOWED_PART_TYPES:
            filename = disposition.get(b"filename", b"").decode("utf-8", "replace")
            raise UnsupportedFormatError(
                f"part {len(frames)} ({filename or 'no filename'}) is {declared}, "
                "not image/jpeg or image/png"
            )
        frames.append(bytes(part.data))
    return frames
