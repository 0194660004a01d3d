"""Dynamic batching: concurrent requests share forward passes; a full queue answers 429."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

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
