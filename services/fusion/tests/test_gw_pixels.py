"""The gateway's pixel stager: one decode per frame, into a shared-memory slot."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jpegs import noise_jpeg
from wma_fusion.config import SharedMemoryConfig
from wma_fusion.errors import ConfigError
from wma_fusion.pixels import PixelStager
from wma_wire.frames import FrameLimits, open_frame
from wma_wire.imaging import decode_image
from wma_wire.protocol import decode_infer_request
from wma_wire.shm import RegionRegistry

pytestmark = pytest.mark.anyio
LIMITS = FrameLimits()


def _jpeg(seed: int, size: int = 40) -> bytes:
    return noise_jpeg(seed, size)


@pytest.fixture
async def stager() -> AsyncIterator[PixelStager]:
    made = PixelStager(SharedMemoryConfig(enabled=True, slots=2, slot_mib=1), threads=2)
    yield made
    made.close()


async def test_staged_pixels_are_the_model_servers_decode_byte_for_byte(
    stager: PixelStager,
) -> None:
    frames = [_jpeg(seed) for seed in range(20)]  # two decode jobs of ten
    staged, outcome = await stager.stage(frames, LIMITS, "r1")
    assert outcome == "staged" and staged is not None
    registry = RegionRegistry()
    try:
        registry.register(staged.region, staged.key, 0, staged.region_bytes)
        request = decode_infer_request(staged.body, dict(staged.headers), registry)
    finally:
        registry.close()
    expected = [decode_image(open_frame(f, "jpeg", LIMITS, i)) for i, f in enumerate(frames)]
    np.testing.assert_array_equal(request.inputs["pixels"].data, np.stack(expected))  # type: ignore[arg-type]
    assert stager.arena.free_slots == 1
    stager.release(staged)
    assert stager.arena.free_slots == 2


async def test_a_cancelled_request_frees_its_slot_only_once_its_decoding_ended(
    stager: PixelStager, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, go_on = threading.Event(), threading.Event()
    real = stager._decode

    def slow(frame: Any) -> Any:
        started.set()
        go_on.wait(10)
        return real(frame)

    monkeypatch.setattr(stager, "_decode", slow)
    task = asyncio.create_task(stager.stage([_jpeg(1), _jpeg(2)], LIMITS, "r1"))
    while not started.is_set():
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stager.arena.free_slots == 1  # a thread still writes into it
    go_on.set()
    for _ in range(1000):
        if stager.arena.free_slots == 2:
            break
        await asyncio.sleep(0.005)
    assert stager.arena.free_slots == 2


def test_an_arena_larger_than_dev_shm_is_refused_at_start_and_leaves_no_file() -> None:
    before = set(Path("/dev/shm").glob(f"wma-gw-{os.getpid()}-*"))
    huge = SharedMemoryConfig(enabled=True, slots=1024, slot_mib=1024)  # 1 TiB
    with pytest.raises(ConfigError, match=r"cannot reserve slots x slot_mib = 1048576 MiB"):
        PixelStager(huge)
    assert set(Path("/dev/shm").glob(f"wma-gw-{os.getpid()}-*")) == before
