"""The frames of a legacy upload (``/check_frame_batch``'s ``files`` parts, or
``/check_frame``'s one ``file`` part), type-checked.

The body is parsed in memory by :mod:`wma_wire.formdata` (frames never
touch the disk), which refuses an empty, cut-off or unterminated body.
"""

from __future__ import annotations

from wma_wire.errors import UnsupportedFormatError
from wma_wire.formdata import read_form_parts

__all__ = ["ALLOWED_PART_TYPES", "BATCH_FIELD", "SINGLE_FIELD", "parse_frame_parts"]

# Declared part types accepted (the bytes are then checked by magic number);
# no Content-Type or application/octet-stream is left to the magic check.
BATCH_FIELD = "files"  # the old client's multipart field, one frame per part
SINGLE_FIELD = "file"  # the old server's /check_frame field
ALLOWED_PART_TYPES = {"image/jpeg", "image/jpg", "image/png", "application/octet-stream", ""}


def parse_frame_parts(
    body: bytes, content_type: str, *, max_files: int, field: str = BATCH_FIELD
) -> list[bytes]:
    """The bytes of every part named ``field``, in order; 415 for a non-image part.

    The form reader's rules (:func:`~wma_wire.formdata.read_form_parts`): 415 for
    a body that is not ``multipart/form-data``, 400 for one that is not complete,
    413 for more parts than ``max_files`` frames allow (other fields are ignored,
    not stored).
    """
    parts = read_form_parts(body, content_type, max_files=max_files)
    frames: list[bytes] = []
    for part in parts:
        if part.disposition()[0] != field:
            continue
        if part.content_type not in ALLOWED_PART_TYPES:
            raise UnsupportedFormatError(
                f"part {len(frames)} ({part.filename or 'no filename'}) is {part.content_type}, "
                "not image/jpeg or image/png"
            )
        frames.append(bytes(part.data))
    return frames
