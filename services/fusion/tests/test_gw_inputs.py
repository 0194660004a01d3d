"""What ``/v1/analyze`` refuses before any fan-out, driven in-process.

Malformed multipart bodies (truncated, empty, no boundary), oversized bodies and
ambiguous (repeated) ids are 4xx ``{"error"}`` answers that name the problem. The
gateway runs in-process (``httpx.ASGITransport``) and its member refuses every
connection (``httpx.MockTransport``): a request that got past the input checks
would be a 503, never the 4xx asserted here.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from gateway_harness import ServeGateway, WriteConfig, refuse_connections
from PIL import Image
from wma_local.samples import grey_frame, write_synthetic_bundle

pytestmark = pytest.mark.anyio
IDS = ("9rfa62j1",)
FRAME = grey_frame(10)
MAX_REQUEST_BYTES = 20_000
CT = "multipart/form-data; boundary=XX"
PID_PART = b'--XX\r\nContent-Disposition: form-data; name="participant_id"\r\n\r\np1\r\n'
FILE_PART = (
    b'--XX\r\nContent-Disposition: form-data; name="files"; filename="f.png"\r\n'
    b"Content-Type: image/png\r\n\r\n" + FRAME + b"\r\n"
)


@pytest.fixture
async def client(
    tmp_path: Path, write_config: WriteConfig, serve_gateway: ServeGateway
) -> AsyncIterator[httpx.AsyncClient]:
    write_synthetic_bundle(tmp_path / "bundle.json", IDS)
    config = write_config(
        tmp_path / "gw.yaml",
        {IDS[0]: "http://member:8000"},
        tmp_path / "bundle.json",
        limits={"max_request_bytes": MAX_REQUEST_BYTES},
        reload={"enabled": False},
    )
    async with serve_gateway(config, members=httpx.MockTransport(refuse_connections)) as client:
        yield client


async def post_raw(
    client: httpx.AsyncClient, body: bytes, content_type: str = CT
) -> httpx.Response:
    headers = {"content-type": content_type}
    return await client.post("/v1/analyze", content=body, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "the body is empty"),
        (PID_PART + FILE_PART, "closing boundary"),  # no closing boundary
        (PID_PART + FILE_PART[:-20], "closing boundary"),  # a part that never ends
        (PID_PART + FILE_PART + b"--XX--", None),  # complete: passes the parser
    ],
    ids=["empty", "no-closing-boundary", "part-never-ends", "complete"],
)
async def test_a_multipart_body_that_does_not_end_properly_is_refused_as_malformed(
    client: httpx.AsyncClient, body: bytes, problem: str | None
) -> None:
    response = await post_raw(client, body)
    if problem is None:
        assert response.status_code == 503, response.text  # reached the (dead) member
        return
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith("malformed multipart body") and problem in error


async def test_multipart_without_a_boundary_is_a_400_naming_the_boundary(
    client: httpx.AsyncClient,
) -> None:
    response = await post_raw(client, PID_PART + FILE_PART + b"--XX--", "multipart/form-data")
    assert response.status_code == 400
    assert "boundary" in response.json()["error"]
    other = await post_raw(client, b"participant_id=p1", "application/x-www-form-urlencoded")
    assert other.status_code == 415
    assert "multipart/form-data" in other.json()["error"]


async def test_an_oversized_body_is_a_413_naming_the_configured_limit(
    client: httpx.AsyncClient,
) -> None:
    big = b"x" * (MAX_REQUEST_BYTES + 100_000)
    response = await post_raw(client, PID_PART + big + b"\r\n--XX--")
    assert response.status_code == 413
    assert f"max_request_bytes={MAX_REQUEST_BYTES}" in response.json()["error"]


@pytest.mark.parametrize("field", ["participant_id", "meeting_id"])
async def test_a_repeated_id_field_is_ambiguous(client: httpx.AsyncClient, field: str) -> None:
    files = [("files", ("f.png", FRAME, "image/png"))]
    data = {"participant_id": "p1", field: ["a", "b"]}
    response = await client.post("/v1/analyze", data=data, files=files, timeout=30)
    assert response.status_code == 400
    assert f"'{field}' is given 2 times" in response.json()["error"]
    other = {} if field == "participant_id" else {"participant_id": "p1"}
    query = await client.post(
        f"/v1/analyze?{field}=a&{field}=b", data=other, files=files, timeout=30
    )
    assert query.status_code == 400
    assert f"'{field}' is given 2 times" in query.json()["error"]


@pytest.mark.parametrize("field", ["participant_id", "meeting_id"])
async def test_an_id_in_the_form_and_in_the_query_is_ambiguous(
    client: httpx.AsyncClient, field: str
) -> None:
    # one of them would go unchecked (found by schemathesis: a bad query value was ignored)
    files = [("files", ("f.png", FRAME, "image/png"))]
    data = {"participant_id": "p1", field: "a"}
    response = await client.post(f"/v1/analyze?{field}=b%0A", data=data, files=files)
    assert response.status_code == 400
    assert f"'{field}' is given in the form and in the query" in response.json()["error"]


async def test_far_too_many_form_parts_is_a_413_naming_max_files(client: httpx.AsyncClient) -> None:
    field = b'--XX\r\nContent-Disposition: form-data; name="x"\r\n\r\ny\r\n'
    response = await post_raw(client, PID_PART + field * 100 + FILE_PART + b"--XX--")
    assert response.status_code == 413, response.text
    assert "too many form parts (max_files=64)" in response.json()["error"]


async def test_a_frame_part_with_an_empty_content_type_is_left_to_the_magic_check(
    client: httpx.AsyncClient,
) -> None:
    # The model server's rule (an empty declared type is accepted): a frame the
    # gateway refused here would pass a member, and the other way round.
    part = FILE_PART.replace(b"Content-Type: image/png", b"Content-Type: ")
    response = await post_raw(client, PID_PART + part + b"--XX--")
    assert response.status_code == 503, response.text  # reached the (dead) member
    text = FILE_PART.replace(b"image/png", b"text/plain")
    refused = await post_raw(client, PID_PART + text + b"--XX--")
    assert refused.status_code == 415
    assert "'text/plain'" in refused.json()["error"]


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


async def test_eight_pngs_of_4096x4096_are_a_413_naming_max_frame_pixels_before_any_fanout(
    tmp_path: Path, write_config: WriteConfig, serve_gateway: ServeGateway
) -> None:
    # A small request (8 x ~17 KB) that would cost 134 Mpx of decoding on every member.
    write_synthetic_bundle(tmp_path / "bundle.json", IDS)
    config = write_config(
        tmp_path / "gw.yaml", {IDS[0]: "http://member:8000"}, tmp_path / "bundle.json"
    )
    calls: list[httpx.Request] = []

    def member(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return refuse_connections(request)

    big = _png(4096, 4096)
    files = [("files", (f"f{i}.png", big, "image/png")) for i in range(8)]
    async with serve_gateway(config, members=httpx.MockTransport(member)) as client:
        response = await client.post("/v1/analyze?participant_id=p", files=files, timeout=30)
    assert response.status_code == 413, response.text
    assert response.json()["error"] == (
        "frame 0 is 4096x4096 pixels, over max_frame_pixels=2073600"
    )
    assert not calls  # refused from the headers, before the fan-out


async def test_frames_over_max_request_pixels_together_are_a_413_naming_it(
    tmp_path: Path, write_config: WriteConfig, serve_gateway: ServeGateway
) -> None:
    write_synthetic_bundle(tmp_path / "bundle.json", IDS)
    limits = {"max_frame_pixels": 100, "max_request_pixels": 150}
    config = write_config(
        tmp_path / "gw.yaml",
        {IDS[0]: "http://member:8000"},
        tmp_path / "bundle.json",
        limits=limits,
    )
    files = [("files", (f"f{i}.png", _png(10, 10), "image/png")) for i in range(2)]
    async with serve_gateway(config, members=httpx.MockTransport(refuse_connections)) as client:
        response = await client.post("/v1/analyze?participant_id=p", files=files)
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "frames total 200 pixels, over max_request_pixels=150"
