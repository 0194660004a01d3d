"""Reading an ``/v1/analyze`` request: body size cap, in-memory multipart, field checks.

Frames are biometric data, so the multipart body is parsed in memory (Starlette's
parser spools large parts to temporary files) and never logged. The frame limits
and format checks are the model server's own (:mod:`wma_model_server.imaging`),
run in a worker thread so header parsing never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request
from wma_model_server.exceptions import ModelServerError
from wma_model_server.imaging import FrameLimits, validate_frames

from wma_fusion.errors import InputError, PayloadTooLarge, UnsupportedMedia

PARTICIPANT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")  # fullmatch: "$" would allow "\n"
FRAME_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "application/octet-stream"})
MAX_FIELD_BYTES = 4096
MULTIPART_FRAMING_BYTES = 64 * 1024  # headers and boundaries around the frames


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)

    def disposition(self) -> tuple[str | None, bool]:
        """The part's form name, and whether it is a file (has a filename)."""
        _, params = parse_options_header(self.headers.get("content-disposition", ""))
        name = params.get(b"name")
        return (name.decode("utf-8", "replace") if name else None), b"filename" in params


@dataclass(frozen=True)
class AnalyzeInput:
    frames: list[bytes]
    participant_id: str
    meeting_id: str | None


async def read_body(request: Request, max_bytes: int, framing_bytes: int = 0) -> bytes:
    """The whole body, refused (413) past ``max_bytes`` + ``framing_bytes``; the error
    names the configured ``max_bytes`` (the framing allowance is internal)."""
    cap = max_bytes + framing_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(
            f"request body is {declared} bytes, over max_request_bytes={max_bytes}"
        )
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise PayloadTooLarge(f"request body is over max_request_bytes={max_bytes}")
    except ClientDisconnect:  # the caller's doing, not our bug: no 500, no traceback
        raise InputError("the client disconnected before sending the whole body") from None
    return bytes(body)


def parse_multipart(body: bytes, content_type: str, max_parts: int) -> list[_Part]:
    """Every part of a complete ``multipart/form-data`` body, in order."""
    mime, params = parse_options_header(content_type)
    if mime != b"multipart/form-data":
        raise UnsupportedMedia("the request must be multipart/form-data with a 'files' field")
    if not params.get(b"boundary"):
        raise InputError("malformed multipart body: the content type has no boundary parameter")
    parts: list[_Part] = []
    header = [b"", b""]
    ended: list[bool] = []

    def begin() -> None:
        if len(parts) >= max_parts:
            raise InputError(f"too many form parts (more than {max_parts})")
        parts.append(_Part())

    def header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def header_end() -> None:
        parts[-1].headers[header[0].decode("latin-1").lower()] = header[1].decode("latin-1")
        header[0], header[1] = b"", b""

    def part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data += data[start:end]

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": begin,
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_part_data": part_data,
            "on_end": lambda: ended.append(True),
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except ValueError as exc:  # python-multipart's parse errors are ValueErrors
        raise InputError(f"malformed multipart body: {exc}") from None
    # finalize() does not check that the body ended: a truncated or empty body (no
    # closing boundary) would otherwise pass with whatever parts it had.
    if not ended:
        what = "is empty" if not body else "does not end with its closing boundary"
        raise InputError(f"malformed multipart body: the body {what}")
    return parts


def _text_field(parts: list[_Part], request: Request, name: str) -> str | None:
    """The field from the form, else from the query; given twice is ambiguous (400)."""
    values = []
    for part in parts:
        part_name, is_file = part.disposition()
        if part_name == name and not is_file:
            if len(part.data) > MAX_FIELD_BYTES:
                raise InputError(f"form field '{name}' is too long")
            values.append(part.data.decode("utf-8", "replace"))
    if len(values) > 1:
        raise InputError(f"form field '{name}' is given {len(values)} times; send it once")
    queried = request.query_params.getlist(name)
    if len(queried) > 1:
        raise InputError(f"query parameter '{name}' is given {len(queried)} times; send it once")
    return values[0] if values else (queried[0] if queried else None)


async def read_analyze_request(request: Request, limits: FrameLimits) -> AnalyzeInput:
    """Everything ``/v1/analyze`` needs, checked; raises :class:`InputError` subclasses."""
    # The body cap allows for multipart framing around the frames themselves.
    body = await read_body(request, limits.max_request_bytes, MULTIPART_FRAMING_BYTES)
    parts = parse_multipart(body, request.headers.get("content-type", ""), limits.max_files + 16)
    frames: list[bytes] = []
    for part in parts:
        name, is_file = part.disposition()
        if name != "files":
            continue
        declared = part.headers.get("content-type", "application/octet-stream").split(";")[0]
        if declared.strip().lower() not in FRAME_TYPES:
            raise UnsupportedMedia(
                f"frame {len(frames)} has content type {declared!r}; send image/jpeg or image/png"
            )
        frames.append(bytes(part.data))
    participant_id = _text_field(parts, request, "participant_id")
    if participant_id is None:
        raise InputError("participant_id is required (form field or query parameter)")
    if not PARTICIPANT_ID.fullmatch(participant_id):
        raise InputError("participant_id must be 1-128 characters of [A-Za-z0-9._:@-]")
    meeting_id = _text_field(parts, request, "meeting_id")
    if meeting_id is not None and not PARTICIPANT_ID.fullmatch(meeting_id):
        raise InputError("meeting_id must be 1-128 characters of [A-Za-z0-9._:@-]")
    if not frames:
        raise InputError("no frames: send one or more JPEG/PNG images in the 'files' field")
    try:
        await asyncio.to_thread(validate_frames, frames, limits)
    except ModelServerError as exc:
        error = {413: PayloadTooLarge, 415: UnsupportedMedia}.get(exc.status_code, InputError)
        raise error(exc.message) from None
    return AnalyzeInput(frames, participant_id, meeting_id)
