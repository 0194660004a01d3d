"""Open Inference Protocol v2: health, metadata, infer in JSON and binary mode."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest
from wma_wire.protocol import (
    UNSCORED,
    InferTensor,
    decode_infer_response,
    encode_infer_request,
    encode_message,
)

pytestmark = pytest.mark.anyio


async def test_health_and_metadata(serve: Any) -> None:
    async with serve(model_id="9rfa62j1") as client:
        assert (await client.get("/v2")).json()["extensions"] == ["binary_tensor_data"]
        assert (await client.get("/v2/health/live")).status_code == 200
        assert (await client.get("/v2/health/ready")).status_code == 200
        meta = (await client.get("/v2/models/9rfa62j1")).json()
        assert {i["name"] for i in meta["inputs"]} == {"images", "pixels"}
        assert (await client.get("/v2/models/9rfa62j1/ready")).json()["ready"] is True
        missing = await client.get("/v2/models/1mjgo9w1")
        assert missing.status_code == 404 and "1mjgo9w1" in missing.json()["error"]
        body, headers = encode_infer_request("r", [b"x"])
        infer404 = await client.post("/v2/models/nope/infer", content=body, headers=headers)
        assert infer404.status_code == 404


async def test_not_ready_until_warmed_up(serve: Any, gated_backend: Any, png: Any) -> None:
    backend = gated_backend("m1")
    backend.warmup = lambda: backend.gate.wait(20)  # warm-up blocks until the gate opens
    async with serve(impl=backend, wait_ready=False) as client:
        assert (await client.get("/v2/health/live")).status_code == 200
        not_ready = await client.get("/v2/models/m1/ready")
        assert not_ready.status_code == 503 and "loading" in not_ready.json()["error"]
        body, headers = encode_infer_request("r", [png(1)])
        r = await client.post("/v2/models/m1/infer", content=body, headers=headers)
        assert r.status_code == 503
        backend.gate.set()
        for _ in range(500):
            if (await client.get("/v2/health/ready")).status_code == 200:
                break
            await asyncio.sleep(0.01)
        assert (await client.get("/v2/health/ready")).status_code == 200


@pytest.mark.parametrize("binary", [True, False])
async def test_infer_matches_legacy_probabilities_and_marks_unscored_frames(
    serve: Any, png: Any, encode_image: Any, form: Any, binary: bool
) -> None:
    rng = np.random.default_rng(3)
    noisy = encode_image(rng.integers(0, 256, (9, 7, 3)))
    frames = [
        png(51),
        b"\x89PNG\r\n\x1a\n broken",
        noisy,
        encode_image(np.full((4, 4, 3), 77), "JPEG"),
    ]
    async with serve() as client:
        body, headers = encode_infer_request("req-1", frames, binary=binary)
        r = await client.post("/v2/models/m1/infer", content=body, headers=headers)
        legacy = await client.post("/check_frame_batch", files=form(frames))
    assert r.status_code == 200, r.text
    assert ("inference-header-content-length" in r.headers) is binary
    reply = decode_infer_response(r.content, r.headers)
    assert reply.id == "req-1" and reply.model_name == "m1"
    assert reply.statuses == ["ok", "undecodable", "ok", "ok"]
    assert reply.probs[1] == UNSCORED
    scored = [float(p) for p, s in zip(reply.probs, reply.statuses, strict=True) if s == "ok"]
    assert scored == legacy.json()["probs"]  # identical, not just close
    assert reply.probs[0] == pytest.approx(0.2, abs=1e-6)


async def test_pixels_input_scores_raw_frames(serve: Any) -> None:
    pixels = np.stack([np.full((6, 6, 3), v, dtype=np.uint8) for v in (0, 51, 255)])
    body, headers = encode_message(
        {"id": "p", "outputs": [{"name": "probs"}]},
        "inputs",
        [InferTensor("pixels", "UINT8", pixels, binary=True)],
    )
    async with serve() as client:
        r = await client.post("/v2/models/m1/infer", content=body, headers=headers)
    reply = decode_infer_response(r.content, r.headers)
    assert list(reply.outputs) == ["probs"]  # only what was asked for, as JSON
    assert "inference-header-content-length" not in r.headers
    np.testing.assert_allclose(reply.probs, [0.0, 0.2, 1.0], atol=1e-6)


def _json_request(inputs: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"id": "x", "inputs": inputs, **extra}).encode()


@pytest.mark.parametrize(
    ("content", "headers", "status", "needle"),
    [
        (b"not json", {}, 400, "not valid JSON"),
        (_json_request([]), {}, 400, "no inputs"),
        (
            _json_request([{"name": "foo", "shape": [1], "datatype": "INT32", "data": [1]}]),
            {},
            400,
            "exactly one input",
        ),
        (
            _json_request([{"name": "images", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}]),
            {},
            400,
            "base64",
        ),
        (
            _json_request(
                [{"name": "images", "shape": [2], "datatype": "BYTES", "data": ["AA=="]}]
            ),
            {},
            400,
            "needs 2 elements",
        ),
        (
            _json_request(
                [
                    {
                        "name": "images",
                        "shape": [1],
                        "datatype": "BYTES",
                        "data": [base64.b64encode(b"GIF89a").decode()],
                    }
                ]
            ),
            {},
            415,
            "not a JPEG",
        ),
        (
            _json_request(
                [{"name": "pixels", "shape": [1, 2, 2], "datatype": "UINT8", "data": [0, 0, 0, 0]}]
            ),
            {},
            400,
            "[N, H, W, 3]",
        ),
        (
            _json_request(
                [{"name": "images", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}],
                outputs=[{"name": "logits"}],
            ),
            {},
            400,
            "unknown output",
        ),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "999"}, 400, "outside the body"),
        (
            _json_request(
                [{"name": "images", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}],
                outputs=5,
            ),
            {},
            400,
            "'outputs' must be a list",
        ),
        (
            _json_request(
                [{"name": "images", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}],
                outputs=True,
            ),
            {},
            400,
            "'outputs' must be a list",
        ),
        (  # a lone surrogate cannot become UTF-8 bytes
            _json_request(
                [{"name": "images", "shape": [1], "datatype": "BYTES", "data": ["\ud800"]}]
            ),
            {},
            400,
            "not valid Unicode",
        ),
        (  # a 400-digit integer does not fit a float
            b'{"inputs": [{"name": "pixels", "shape": [1], "datatype": "FP32", "data": ['
            + b"9" * 400
            + b"]}]}",
            {},
            400,
            "out of range for FP32",
        ),
        (b"[" * 1000 + b"]" * 1000, {}, 400, "nested too deeply"),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": '
            + b"[" * 100_000
            + b"1"
            + b"]" * 100_000
            + b"}]}",
            {},
            400,
            "nested too deeply",
        ),
    ],
)
async def test_bad_infer_requests_are_4xx_naming_the_problem(
    serve: Any, png: Any, content: bytes, headers: dict[str, str], status: int, needle: str
) -> None:
    async with serve() as client:
        r = await client.post("/v2/models/m1/infer", content=content, headers=headers)
        assert r.status_code == status, r.text
        assert needle in r.json()["error"]
        body, ok_headers = encode_infer_request("ok", [png(51)])
        ok = await client.post("/v2/models/m1/infer", content=body, headers=ok_headers)
        assert ok.status_code == 200


async def test_infer_limits_apply_to_images_and_pixels(serve: Any, png: Any) -> None:
    async with serve(max_files=2, max_frame_pixels=64) as client:
        body, headers = encode_infer_request("r", [png(1)] * 3)
        many = await client.post("/v2/models/m1/infer", content=body, headers=headers)
        big = np.zeros((1, 9, 9, 3), dtype=np.uint8)
        body, headers = encode_message(
            {"id": "p"}, "inputs", [InferTensor("pixels", "UINT8", big, True)]
        )
        large = await client.post("/v2/models/m1/infer", content=body, headers=headers)
    assert many.status_code == 413 and "max_files=2" in many.json()["error"]
    assert large.status_code == 413 and "max_frame_pixels=64" in large.json()["error"]
