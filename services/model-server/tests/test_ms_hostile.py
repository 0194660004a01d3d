"""Hostile input over a real uvicorn connection: every bad request is a 4xx JSON,
our own bug a 500 JSON, and the next request on the same kept-alive connection
(``httpx.Client`` keeps it) is answered."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from wma_local.threaded import GatewayThread  # uvicorn on a thread; serves any app
from wma_model_server.app import create_app
from wma_model_server.backends.mock import MockBackend
from wma_model_server.settings import ModelServerSettings


class BrokenPrepareBackend(MockBackend):
    """A backend with a bug: preparing a frame raises an unexpected exception."""

    def prepare(self, frame: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
        raise RuntimeError("bug in prepare")

    def warmup(self) -> None:
        pass


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (51, 51, 51)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def server() -> Iterator[httpx.Client]:
    app = create_app(ModelServerSettings(model_id="m1"), backend=BrokenPrepareBackend("m1"))
    thread = GatewayThread(app).start()
    try:
        with httpx.Client(base_url=thread.url, timeout=10) as client:
            end = time.monotonic() + 30
            while client.get("/v2/health/ready").status_code != 200:
                assert time.monotonic() < end, "the model server never became ready"
                time.sleep(0.02)
            yield client
    finally:
        thread.stop()


def _connections(client: httpx.Client) -> set[int]:
    return {id(c) for c in client._transport._pool.connections}  # type: ignore[attr-defined]


def _then_the_same_connection_answers(client: httpx.Client) -> None:
    before = _connections(client)
    assert client.get("/v2/health/live").status_code == 200
    assert _connections(client) == before


def test_a_boundary_over_256_characters_is_a_400_json(server: httpx.Client) -> None:
    r = server.post(
        "/check_frame_batch",
        content=b"x",
        headers={"Content-Type": f"multipart/form-data; boundary={'b' * 257}"},
    )
    assert r.status_code == 400 and "malformed multipart body" in r.json()["error"]
    _then_the_same_connection_answers(server)


@pytest.mark.parametrize("where", ["id", "shape", "data"])
def test_an_integer_of_more_than_4300_digits_in_an_infer_body_is_a_400_json(
    server: httpx.Client, where: str
) -> None:
    huge = "9" * 4301
    entry = {"name": "images", "datatype": "BYTES", "shape": [1], "data": ["eA=="]}
    body = json.dumps({"id": "r", "inputs": [entry]})
    target = {"id": '"r"', "shape": "[1]", "data": '["eA=="]'}[where]
    replacement = huge if where == "id" else f"[{huge}]"
    body = body.replace(target, replacement, 1)
    r = server.post(
        "/v2/models/m1/infer", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert "Exceeds the limit" in r.json()["error"]
    _then_the_same_connection_answers(server)


def test_an_unexpected_error_is_a_500_json_and_the_connection_lives(
    server: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="wma_model_server"):
        r = server.post("/check_frame_batch", files=[("files", ("f.png", _png(), "image/png"))])
    assert r.status_code == 500 and r.json() == {"error": "internal error"}
    assert "bug in prepare" not in r.text
    _then_the_same_connection_answers(server)
    metrics = server.get("/metrics").text
    assert 'wma_ms_requests_total{endpoint="/check_frame_batch",status="500"} 1.0' in metrics
