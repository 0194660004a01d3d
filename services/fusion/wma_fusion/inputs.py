"""Reading an ``/v1/analyze`` request: body size cap, in-memory multipart (or an OIP
v2 infer request), field checks.

Frames are biometric data, so the multipart body is parsed in memory (Starlette's
parser spools large parts to temporary files) by the shared reader
(:mod:`wma_wire.formdata`) and never logged. The body cap (:mod:`wma_wire.body`),
the accepted part types (:mod:`wma_wire.legacy_form`), the frame limits and format
checks (:mod:`wma_wire.frames`) are the model server's too, so a request the
gateway accepts is never refused by a member; their errors keep their status
(400/413/415). Frame checks run in a worker thread so header parsing never blocks
the event loop.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from starlette.requests import Request
from wma_wire.body import read_body
from wma_wire.formdata import FormPart, read_form_parts
from wma_wire.frames import FrameLimits, validate_frames
from wma_wire.legacy_form import ALLOWED_PART_TYPES
from wma_wire.protocol import ProtocolError, decode_infer_request

from wma_fusion.errors import InputError, UnsupportedMedia

PARTICIPANT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")  # fullmatch: "$" would allow "\n"
MAX_FIELD_BYTES = 4096
# The frames as an OIP v2 infer request (what the SDK sends: no multipart to parse)
OIP_MEDIA_TYPES = ("application/json", "application/octet-stream")


@dataclass(frozen=True)
class AnalyzeInput:
    frames: list[bytes]
    participant_id: str
    meeting_id: str | None


def _text_field(parts: list[FormPart], request: Request, name: str) -> str | None:
    """The field from the form or from the query; given twice, or in both, is
    ambiguous (400)."""
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
    if values and queried:  # which one is meant? (and the other would go unchecked)
        raise InputError(f"'{name}' is given in the form and in the query; send it once")
    return values[0] if values else (queried[0] if queried else None)


async def read_analyze_request(request: Request, limits: FrameLimits) -> AnalyzeInput:
    """Everything ``/v1/analyze`` needs, checked; raises :class:`InputError` subclasses."""
    # the cap allows for the multipart framing around the frames themselves
    body = await read_body(request, limits.max_request_bytes)
    # Parsing up to 64 MiB of multipart and reading every frame's header is CPU work:
    # one worker-thread job, off the event loop. The model server's reader and rules:
    # 415 if not multipart, 400 if not complete, 413 past max_files + EXTRA_FORM_PARTS
    # parts; then the frame checks (wma_wire.frames).
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() in OIP_MEDIA_TYPES:
        headers = dict(request.headers)
        return await asyncio.to_thread(_read_infer, body, headers, request, limits)
    return await asyncio.to_thread(_read_form, body, content_type, request, limits)


def _read_infer(
    body: bytes, headers: dict[str, str], request: Request, limits: FrameLimits
) -> AnalyzeInput:
    """An OIP v2 infer request (JSON, or the binary tensor extension) whose BYTES input
    ``images`` holds the frames, as the model servers take it; ids in the query."""
    try:
        frames = decode_infer_request(body, headers).images()
    except ProtocolError as exc:
        raise InputError(f"malformed infer request: {exc}") from None
    return _checked(frames, [], request, limits)


def _read_form(
    body: bytes, content_type: str, request: Request, limits: FrameLimits
) -> AnalyzeInput:
    parts = read_form_parts(body, content_type, max_files=limits.max_files)
    frames: list[bytes] = []
    for part in parts:
        name, is_file = part.disposition()
        if name != "files":
            continue
        if part.content_type not in ALLOWED_PART_TYPES:  # the model server's rule
            raise UnsupportedMedia(
                f"frame {len(frames)} has content type {part.content_type!r}; "
                "send image/jpeg or image/png"
            )
        frames.append(bytes(part.data))
    return _checked(frames, parts, request, limits)


def _checked(
    frames: list[bytes], parts: list[FormPart], request: Request, limits: FrameLimits
) -> AnalyzeInput:
    participant_id = _text_field(parts, request, "participant_id")
    if participant_id is None:
        raise InputError("participant_id is required (form field or query parameter)")
    if not PARTICIPANT_ID.fullmatch(participant_id):
        raise InputError("participant_id must be 1-128 characters of [A-Za-z0-9._:@-]")
    meeting_id = _text_field(parts, request, "meeting_id")
    if meeting_id is not None and not PARTICIPANT_ID.fullmatch(meeting_id):
        raise InputError("meeting_id must be 1-128 characters of [A-Za-z0-9._:@-]")
    if not frames:
        raise InputError(
            "no frames: send one or more JPEG/PNG images in the 'files' field "
            "(or the infer request's input 'images')"
        )
    validate_frames(frames, limits)
    return AnalyzeInput(frames, participant_id, meeting_id)
