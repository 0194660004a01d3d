"""Dynamic batching: concurrent requests share forward passes; a full queue answers 429."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import wma_model_server.pipeline as pipeline_module
from prometheus_client.parser import text_string_to_metric_families
from wma_wire.protocol import encode_infer_request

pytestmark = pytest.mark.anyio


def _histogram(text: str, name: str) -> dict[str, float]:
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return {s.name + s.labels.get("le", ""): s.value for s in family.samples}
    raise AssertionError(f"{name} not exposed")


async def test_concurrent_requests_share_forward_passes(serve: Any, png: Any, form: Any) -> None:
    async with serve(max_delay_ms=300, max_batch=16) as client:
        replies = await asyncio.gather(
            *(client.post("/check_frame_batch", files=form([png(v)])) for v in (51, 102, 153, 204))
        )
        metrics = (await client.get("/metrics")).text
    assert [r.json()["probs"] for r in replies] == [
        pytest.approx([v]) for v in (0.2, 0.4, 0.6, 0.8)
    ]  # each caller gets its own frames' scores back
    batches = _histogram(metrics, "wma_ms_batch_frames")
    assert batches["wma_ms_batch_frames_sum"] == 4
    assert batches["wma_ms_batch_frames_count"] < 4  # fewer forward passes than requests
    assert batches["wma_ms_batch_frames_bucket1.0"] < batches["wma_ms_batch_frames_count"]


async def test_requests_larger_than_max_batch_are_split(serve: Any, png: Any, form: Any) -> None:
    async with serve(max_batch=2, max_delay_ms=0) as client:
        r = await client.post(
            "/check_frame_batch", files=form([png(v) for v in (0, 51, 102, 153, 204)])
        )
        metrics = (await client.get("/metrics")).text
    assert r.json()["probs"] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8], abs=1e-6)
    assert _histogram(metrics, "wma_ms_batch_frames")["wma_ms_batch_frames_count"] == 3


async def test_full_queue_answers_429_with_retry_after(
    serve: Any, gated_backend: Any, png: Any, form: Any
) -> None:
    backend = gated_backend("m1")
    async with serve(impl=backend, max_queue_frames=2, max_files=2, max_delay_ms=0) as client:
        first = asyncio.create_task(
            client.post("/check_frame_batch", files=form([png(51), png(51)]))
        )
        while not backend.started.is_set():  # the slow forward pass holds both frames
            await asyncio.sleep(0.01)
        rejected = await client.post("/check_frame_batch", files=form([png(102)]))
        queue = [
            line
            for line in (await client.get("/metrics")).text.splitlines()
            if line.startswith("wma_ms_queue_frames ")
        ]
        backend.gate.set()
        done = await first
        after = await client.post("/check_frame_batch", files=form([png(102)]))
    assert rejected.status_code == 429
    assert int(rejected.headers["retry-after"]) >= 1
    assert "max_queue_frames=2" in rejected.json()["error"]
    assert queue == ["wma_ms_queue_frames 2.0"]
    assert done.json()["probs"] == pytest.approx([0.2, 0.2])
    assert after.status_code == 200  # the server recovers once the queue drains


async def test_a_full_queue_refuses_before_decoding_or_preparing_any_frame(
    serve: Any, gated_backend: Any, png: Any, form: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = gated_backend("m1")
    decoded: list[int] = []
    prepared: list[int] = []
    real_decode, real_prepare = pipeline_module.decode_image, backend.prepare
    monkeypatch.setattr(
        pipeline_module, "decode_image", lambda image: decoded.append(1) or real_decode(image)
    )
    backend.prepare = lambda frame: prepared.append(1) or real_prepare(frame)
    async with serve(impl=backend, max_queue_frames=2, max_files=2, max_delay_ms=0) as client:
        first = asyncio.create_task(
            client.post("/check_frame_batch", files=form([png(51), png(51)]))
        )
        while not backend.started.is_set():
            await asyncio.sleep(0.01)
        body, headers = encode_infer_request("r", [png(102)])
        rejected = [
            await client.post("/check_frame_batch", files=form([png(102)])),
            await client.post("/v2/models/m1/infer", content=body, headers=headers),
        ]
        backend.gate.set()
        await first
    assert [r.status_code for r in rejected] == [429, 429]
    assert (len(decoded), len(prepared)) == (2, 2)  # only the first request's frames


async def test_queue_capacity_held_for_a_refused_request_is_given_back(
    serve: Any, png: Any, form: Any, bomb_png: bytes
) -> None:
    async with serve(max_queue_frames=2, max_files=2) as client:
        refused = await client.post("/check_frame_batch", files=form([png(1), bomb_png]))
        undecodable = await client.post(
            "/check_frame_batch", files=form([png(1), b"\x89PNG\r\n\x1a\n broken"])
        )
        full = await client.post("/check_frame_batch", files=form([png(51), png(51)]))
        queue = [
            line
            for line in (await client.get("/metrics")).text.splitlines()
            if line.startswith("wma_ms_queue_frames ")
        ]
    assert refused.status_code == 413 and undecodable.json()["num_scored"] == 1
    assert full.json()["probs"] == pytest.approx([0.2, 0.2])
    assert queue == ["wma_ms_queue_frames 0.0"]


async def test_an_idle_model_starts_at_once_and_a_busy_one_coalesces_what_arrives(
    serve: Any, gated_backend: Any, png: Any, form: Any
) -> None:
    # Default settings: no batching window. The first request's pass starts at once
    # (alone); the two that arrive while it runs share the next pass.
    backend = gated_backend("m1")
    async with serve(impl=backend) as client:
        first = asyncio.create_task(client.post("/check_frame_batch", files=form([png(51)])))
        while not backend.started.is_set():
            await asyncio.sleep(0.01)
        later = [
            asyncio.create_task(client.post("/check_frame_batch", files=form([png(v)])))
            for v in (102, 153)
        ]
        batcher = client.app.state.model_server.pipeline.batcher  # type: ignore[attr-defined]
        while batcher._waiting_frames() < 2:  # both queued behind the running pass
            await asyncio.sleep(0.01)
        backend.gate.set()
        replies = [await first, *[await t for t in later]]
        metrics = (await client.get("/metrics")).text
    assert [r.json()["probs"] for r in replies] == [pytest.approx([v]) for v in (0.2, 0.4, 0.6)]
    batches = _histogram(metrics, "wma_ms_batch_frames")
    assert (batches["wma_ms_batch_frames_count"], batches["wma_ms_batch_frames_sum"]) == (2, 3)
