"""Serving guarantees across endpoints: CPU work off the event loop, readiness,
model failures as JSON errors, and the limits of the OIP and multipart paths."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import pytest
import wma_model_server.pipeline as pipeline_module
import wma_model_server.routes_legacy as legacy_module
import wma_model_server.routes_v2 as v2_module
from wma_model_server.backends.mock import MockBackend
from wma_wire.protocol import (
    InferRequest,
    InferTensor,
    encode_infer_request,
    encode_message,
)

pytestmark = pytest.mark.anyio


class RecordingBackend(MockBackend):
    """Mock backend that notes the thread of every prepare/predict call."""

    def __init__(self, model_id: str, calls: list[tuple[str, int]]) -> None:
        super().__init__(model_id)
        self.calls = calls

    def prepare(self, frame: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
        self.calls.append(("prepare", threading.get_ident()))
        return super().prepare(frame)

    def predict(self, inputs: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        self.calls.append(("predict", threading.get_ident()))
        return super().predict(inputs)


async def test_parsing_decoding_cropping_and_inference_never_run_on_the_event_loop(
    serve: Any, png: Any, form: Any, face_jpeg: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []

    def record(module: Any, name: str) -> None:
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, threading.get_ident()))
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    record(legacy_module, "parse_frame_parts")
    record(v2_module, "decode_infer_request")
    record(InferRequest, "images")  # base64 decoding of up to max_request_bytes
    # check_frames (lengths and magic bytes, no parsing) runs on the loop on purpose: it
    # decides 4xx before queue capacity is reserved.
    for name in ("open_frame", "decode_image", "crop_largest_face"):
        record(pipeline_module, name)
    loop_thread = threading.get_ident()
    async with serve(impl=RecordingBackend("m1", calls)) as client:
        calls.clear()  # warm-up is not a request
        legacy = await client.post(
            "/check_frame_batch?recrop=true", files=form([face_jpeg], "image/jpeg")
        )
        for binary in (True, False):
            body, headers = encode_infer_request("r", [png(51)], binary=binary)
            oip = await client.post("/v2/models/m1/infer", content=body, headers=headers)
            assert oip.status_code == 200
    assert legacy.status_code == 200 and legacy.json()["num_scored"] == 1
    assert {name for name, _ in calls} == {
        "parse_frame_parts",
        "decode_infer_request",
        "images",
        "open_frame",
        "decode_image",
        "crop_largest_face",
        "prepare",
        "predict",
    }
    on_loop = sorted({name for name, ident in calls if ident == loop_thread})
    assert on_loop == []


async def test_legacy_endpoint_answers_503_until_the_model_is_warm(
    serve: Any, gated_backend: Any, png: Any, form: Any
) -> None:
    backend = gated_backend("m1")
    backend.warmup = lambda: backend.gate.wait(20)
    async with serve(impl=backend, wait_ready=False) as client:
        early = await client.post("/check_frame_batch", files=form([png(51)]))
        backend.gate.set()
        for _ in range(500):
            if (await client.get("/v2/health/ready")).status_code == 200:
                break
            await asyncio.sleep(0.01)
        late = await client.post("/check_frame_batch", files=form([png(51)]))
    assert early.status_code == 503
    assert "m1 is not ready (model is loading)" in early.json()["error"]
    assert late.status_code == 200 and late.json()["probs"] == pytest.approx([0.2])


class NaNForBlackBackend(MockBackend):
    """A broken model: NaN for black frames (as an overflowing fp16 model might give)."""

    def predict(self, inputs: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        probs = super().predict(inputs)
        probs[np.array([float(x[0]) for x in inputs]) == 0.0] = np.nan
        return probs


async def test_non_finite_model_output_fails_only_its_request_with_a_json_error(
    serve: Any, png: Any, form: Any
) -> None:
    async with serve(impl=NaNForBlackBackend("m1"), max_delay_ms=200) as client:
        bad, good = await asyncio.gather(  # both land in one forward pass
            client.post("/check_frame_batch", files=form([png(0)])),
            client.post("/check_frame_batch", files=form([png(51)])),
        )
        body, headers = encode_infer_request("r", [png(0)])
        oip = await client.post("/v2/models/m1/infer", content=body, headers=headers)
        after = await client.post("/check_frame_batch", files=form([png(102)]))
    assert bad.status_code == 500 and "non-finite" in bad.json()["error"]
    assert oip.status_code == 500 and "non-finite" in oip.json()["error"]
    assert good.status_code == 200 and good.json()["probs"] == pytest.approx([0.2])
    assert after.json()["probs"] == pytest.approx([0.4])


async def test_oip_byte_and_pixel_limits_answer_413_naming_them(
    serve: Any, png: Any, encode_image: Any, bomb_png: bytes
) -> None:
    noisy = encode_image(np.random.default_rng(0).integers(0, 256, (48, 48, 3)))
    pixels = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    cases: list[tuple[dict[str, Any], tuple[bytes, dict[str, str]], str]] = [
        ({"max_file_bytes": 500}, encode_infer_request("r", [png(1), noisy]), "max_file_bytes=500"),
        (
            {"max_request_bytes": 600, "max_file_bytes": 600},
            encode_infer_request("r", [png(1)] * 12),
            "max_request_bytes=600",
        ),
        ({}, encode_infer_request("r", [png(1), bomb_png]), "max_frame_pixels"),
        (
            {"max_files": 3, "max_queue_frames": 3},
            encode_message({"id": "p"}, "inputs", [InferTensor("pixels", "UINT8", pixels, True)]),
            "max_files=3",
        ),
    ]
    for settings, (body, headers), needle in cases:
        async with serve(**settings) as client:
            r = await client.post("/v2/models/m1/infer", content=body, headers=headers)
            assert r.status_code == 413, (needle, r.text)
            assert needle in r.json()["error"]
            ok_body, ok_headers = encode_infer_request("ok", [png(51)])
            ok = await client.post("/v2/models/m1/infer", content=ok_body, headers=ok_headers)
            assert ok.status_code == 200


async def test_multipart_with_too_many_parts_is_413_before_any_decoding(
    serve: Any, png: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    for name in ("check_frames", "open_frame", "decode_image"):
        original = getattr(pipeline_module, name)
        monkeypatch.setattr(
            pipeline_module,
            name,
            lambda *a, _name=name, _f=original: calls.append(_name) or _f(*a),
        )
    fields = {f"field{i}": "x" for i in range(40)}  # non-file parts are not stored
    async with serve(max_files=2, max_queue_frames=2) as client:
        r = await client.post("/check_frame_batch", data=fields, files={"files": png(1)})
        assert calls == []  # refused while parsing the form: no frame was looked at
        ok = await client.post("/check_frame_batch", files={"files": png(1)})
    assert r.status_code == 413 and "too many form parts (max_files=2)" in r.json()["error"]
    assert ok.status_code == 200 and calls == ["check_frames", "open_frame", "decode_image"]


class BrokenPrepareBackend(MockBackend):
    """A backend with a bug: preparing a frame raises an unexpected exception."""

    def prepare(self, frame: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
        raise RuntimeError("bug in prepare")

    def warmup(self) -> None:
        pass


async def test_an_unexpected_exception_is_a_json_500_logged_with_its_traceback(
    serve: Any, png: Any, form: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(impl=BrokenPrepareBackend("m1")) as client:
        app = client.app  # type: ignore[attr-defined]
        # answered by wma_wire's InternalErrorMiddleware, which does not re-raise
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ms") as raw:
            r = await raw.post("/check_frame_batch", files=form([png(51)]))
            metrics = (await raw.get("/metrics")).text
    assert r.status_code == 500
    assert r.json() == {"error": "internal error"}
    (record,) = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert record.levelname == "ERROR" and record.exc_info is not None
    assert "bug in prepare" not in r.text  # internals are not sent to the caller
    assert 'wma_ms_requests_total{endpoint="/check_frame_batch",status="500"} 1.0' in metrics


async def test_503_and_429_are_logged_as_warnings_and_model_failures_as_errors(
    serve: Any, gated_backend: Any, png: Any, form: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wma_model_server")
    backend = gated_backend("m1")
    warm = threading.Event()
    backend.warmup = lambda: warm.wait(20)
    async with serve(impl=backend, wait_ready=False, max_queue_frames=1, max_files=1) as client:
        loading = await client.post("/check_frame_batch", files=form([png(51)]))
        warm.set()
        while (await client.get("/v2/health/ready")).status_code != 200:
            await asyncio.sleep(0.01)
        first = asyncio.create_task(client.post("/check_frame_batch", files=form([png(51)])))
        while not backend.started.is_set():
            await asyncio.sleep(0.01)
        full = await client.post("/check_frame_batch", files=form([png(51)]))
        backend.gate.set()
        await first
    async with serve(impl=NaNForBlackBackend("m1")) as client:
        broken = await client.post("/check_frame_batch", files=form([png(0)]))
    assert (loading.status_code, full.status_code, broken.status_code) == (503, 429, 500)
    levels = {
        status: {r.levelname for r in caplog.records if f"-> {status}:" in r.getMessage()}
        for status in (503, 429, 500)
    }
    assert levels == {503: {"WARNING"}, 429: {"WARNING"}, 500: {"ERROR"}}


@pytest.mark.parametrize(
    ("settings", "size", "count", "needle"),
    [
        ({}, 4096, 8, "frame 0 is 4096x4096 pixels, over max_frame_pixels=2073600"),
        (
            {"max_frame_pixels": 100, "max_request_pixels": 150},
            10,
            2,
            "frames total 200 pixels, over max_request_pixels=150",
        ),
    ],
    ids=["8-pngs-of-4096x4096", "over-max-request-pixels"],
)
async def test_frames_over_the_pixel_limits_are_413_from_their_headers_before_any_decode(
    serve: Any,
    encode_image: Any,
    form: Any,
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, int],
    size: int,
    count: int,
    needle: str,
) -> None:
    decoded: list[object] = []
    original = pipeline_module.decode_image
    monkeypatch.setattr(pipeline_module, "decode_image", lambda f: decoded.append(f) or original(f))
    frame = encode_image(np.zeros((size, size, 3), dtype=np.uint8))
    async with serve(**settings) as client:
        legacy = await client.post("/check_frame_batch", files=form([frame] * count))
        body, headers = encode_infer_request("r", [frame] * count)
        v2 = await client.post("/v2/models/m1/infer", content=body, headers=headers)
    for r in (legacy, v2):
        assert r.status_code == 413, r.text
        assert r.json()["error"] == needle
    assert decoded == []
