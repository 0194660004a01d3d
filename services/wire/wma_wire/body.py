"""Reading a request body into memory under a size cap; shared by the model server
and the gateway, so both count bytes, refuse and answer a disconnect alike.

The cap is ``max_bytes`` (the ``max_request_bytes`` setting, which also bounds the
frames' total in :func:`~wma_wire.frames.validate_frames`) plus a framing
allowance for what wraps the frames: the OIP JSON header and length prefixes, or
multipart boundaries and part headers. Without it a body whose frames total
exactly ``max_request_bytes`` (which the gateway accepts) would be refused by a
member once re-wrapped.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from wma_wire.errors import BadRequestError, LimitExceededError

__all__ = ["FRAMING_BYTES", "read_body"]

FRAMING_BYTES = 64 * 1024


async def read_body(request: Request, max_bytes: int, framing_bytes: int = FRAMING_BYTES) -> bytes:
    """The whole body; :class:`LimitExceededError` (413) as soon as it grows past
    ``max_bytes`` + ``framing_bytes`` (the message names ``max_bytes``: the allowance
    is internal), :class:`BadRequestError` (400) when the client disconnects mid-body."""
    cap = max_bytes + framing_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise LimitExceededError(
            f"request body is {declared} bytes, over max_request_bytes={max_bytes}"
        )
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise LimitExceededError(f"request body is over max_request_bytes={max_bytes}")
    except ClientDisconnect:  # the caller's doing, not our bug: no 500, no traceback
        raise BadRequestError("the client disconnected before sending the whole body") from None
    return bytes(body)
