"""The request body cap shared with the gateway: a framing allowance, no 500 on a disconnect."""

from __future__ import annotations

from typing import Any

import pytest
from wma_wire.protocol import encode_infer_request

pytestmark = pytest.mark.anyio

LIMIT = 4000


def padded(png: Any, value: int, size: int) -> bytes:
    """A PNG of exactly ``size`` bytes (bytes after IEND are ignored by decoders)."""
    data: bytes = png(value)
    return data + b"\0" * (size - len(data))


async def test_frames_totalling_max_request_bytes_are_not_refused_for_their_framing(
    serve: Any, png: Any, form: Any
) -> None:
    # What the gateway accepts (frames totalling max_request_bytes) and re-wraps
    # for a member: the OIP header and length prefixes, or multipart framing.
    frames = [padded(png, 51, LIMIT // 2)] * 2
    async with serve(max_request_bytes=LIMIT, max_file_bytes=LIMIT) as client:
        body, headers = encode_infer_request("r", frames, binary=True)
        assert len(body) > LIMIT
        oip = await client.post("/v2/models/m1/infer", content=body, headers=headers)
        assert oip.status_code == 200, oip.text
        legacy = await client.post("/check_frame_batch", files=form(frames))
        assert legacy.status_code == 200, legacy.text
        over = await client.post("/check_frame_batch", files=form([*frames, png(51)]))
        assert over.status_code == 413
        assert f"max_request_bytes={LIMIT}" in over.json()["error"]


async def test_a_client_that_disconnects_mid_body_gets_a_400_not_a_500(serve: Any) -> None:
    sent: list[dict[str, Any]] = []
    messages = [
        {"type": "http.request", "body": b"--x\r\n", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/check_frame_batch",
        "raw_path": b"/check_frame_batch",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"ms"),
            (b"content-type", b"multipart/form-data; boundary=x"),
            (b"content-length", b"100000"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    async with serve() as client:  # ready; the raw ASGI call can disconnect mid-body
        await client.app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 400
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"disconnected before sending the whole body" in body
