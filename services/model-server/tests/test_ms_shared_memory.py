"""The system shared memory extension: off by default, on with ``shared_memory``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from jpegs import noise_jpeg
from wma_wire.protocol import (
    decode_infer_response,
    encode_infer_request,
    encode_shared_pixels_request,
)
from wma_wire.shm import UNKNOWN_REGION, PixelArena

pytestmark = pytest.mark.anyio


@pytest.fixture
def arena() -> Iterator[PixelArena]:
    made = PixelArena(slots=2, slot_bytes=2**20)
    yield made
    made.close()


def _register(arena: PixelArena) -> dict[str, Any]:
    return {"key": arena.key, "offset": 0, "byte_size": arena.size}


def _jpeg(seed: int, size: int = 32) -> bytes:
    return noise_jpeg(seed, size)


async def test_off_by_default_every_route_is_a_404_saying_how_to_turn_it_on(
    serve: Any, arena: PixelArena
) -> None:
    async with serve() as client:
        assert (await client.get("/v2")).json()["extensions"] == ["binary_tensor_data"]
        for method, path, body in [
            ("GET", "/v2/systemsharedmemory/status", None),
            ("POST", "/v2/systemsharedmemory/region/gw/register", _register(arena)),
            ("POST", "/v2/systemsharedmemory/region/gw/unregister", None),
            ("POST", "/v2/systemsharedmemory/unregister", None),
        ]:
            r = await client.request(method, path, json=body)
            assert r.status_code == 404, path
            assert "WMA_MS_SHARED_MEMORY" in r.json()["error"]
        ref, headers = encode_shared_pixels_request("r", arena.name, 0, [1, 2, 2, 3])
        infer = await client.post("/v2/models/m1/infer", content=ref, headers=headers)
        assert infer.status_code == 400
        assert "shared memory is not enabled" in infer.json()["error"]


async def test_pixels_by_reference_score_exactly_as_the_encoded_frames(
    serve: Any, arena: PixelArena
) -> None:
    from wma_wire.frames import FrameLimits, open_frame
    from wma_wire.imaging import decode_image

    frames = [_jpeg(seed) for seed in range(5)]
    decoded = [decode_image(open_frame(f, "jpeg", FrameLimits(), i)) for i, f in enumerate(frames)]
    pixels = np.stack([d for d in decoded if d is not None])
    slot = arena.acquire(pixels.size)
    assert slot is not None
    slot.array[:] = pixels.reshape(-1)
    async with serve(shared_memory=True) as client:
        assert "system_shared_memory" in (await client.get("/v2")).json()["extensions"]
        r = await client.post(
            f"/v2/systemsharedmemory/region/{arena.name}/register", json=_register(arena)
        )
        assert r.status_code == 200, r.text
        status = (await client.get("/v2/systemsharedmemory/status")).json()
        assert status == [{"name": arena.name, **_register(arena)}]
        ref, headers = encode_shared_pixels_request(
            "r", arena.name, slot.offset, list(pixels.shape)
        )
        by_reference = await client.post("/v2/models/m1/infer", content=ref, headers=headers)
        body, headers = encode_infer_request("r", frames)
        encoded = await client.post("/v2/models/m1/infer", content=body, headers=headers)
    assert by_reference.status_code == 200, by_reference.text
    shared = decode_infer_response(by_reference.content, by_reference.headers)
    plain = decode_infer_response(encoded.content, encoded.headers)
    assert shared.statuses == plain.statuses == ["ok"] * 5
    np.testing.assert_array_equal(shared.probs, plain.probs)  # identical, not close


async def test_an_unregistered_region_is_a_400_naming_it(serve: Any, arena: PixelArena) -> None:
    async with serve(shared_memory=True) as client:
        ref, headers = encode_shared_pixels_request("r", "gw-gone", 0, [1, 2, 2, 3])
        r = await client.post("/v2/models/m1/infer", content=ref, headers=headers)
        assert r.status_code == 400
        assert r.json()["error"].startswith(f"{UNKNOWN_REGION} 'gw-gone'")
        named = await client.get("/v2/systemsharedmemory/region/gw-gone/status")
        assert named.status_code == 404


async def test_unregistering_forgets_the_region(serve: Any, arena: PixelArena) -> None:
    async with serve(shared_memory=True) as client:
        url = f"/v2/systemsharedmemory/region/{arena.name}"
        assert (await client.post(f"{url}/register", json=_register(arena))).status_code == 200
        assert (await client.get(f"{url}/status")).json()[0]["key"] == arena.key
        gone = await client.post(f"{url}/unregister")
        assert gone.json() == {"unregistered": [arena.name]}
        assert (await client.get("/v2/systemsharedmemory/status")).json() == []
        ref, headers = encode_shared_pixels_request("r", arena.name, 0, [1, 2, 2, 3])
        r = await client.post("/v2/models/m1/infer", content=ref, headers=headers)
        assert r.status_code == 400 and UNKNOWN_REGION in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"key": "../../etc/passwd", "byte_size": 10}, "key"),
        ({"key": "wma-none-such", "byte_size": 10}, "cannot open"),
        ({"key": "x", "byte_size": 0}, "byte_size"),
        ({"key": "x", "byte_size": 10, "extra": 1}, "extra"),
        ({"byte_size": 10}, "key"),
    ],
)
async def test_a_bad_registration_is_a_400_naming_the_problem(
    serve: Any, body: dict[str, Any], needle: str
) -> None:
    async with serve(shared_memory=True) as client:
        r = await client.post("/v2/systemsharedmemory/region/gw/register", json=body)
        assert r.status_code == 400, r.text
        assert needle in r.json()["error"]
        assert (await client.get("/v2/systemsharedmemory/status")).json() == []


async def test_pixels_by_reference_keep_the_frame_limits(serve: Any, arena: PixelArena) -> None:
    async with serve(shared_memory=True, max_files=2) as client:
        url = f"/v2/systemsharedmemory/region/{arena.name}/register"
        assert (await client.post(url, json=_register(arena))).status_code == 200
        ref, headers = encode_shared_pixels_request("r", arena.name, 0, [3, 4, 4, 3])
        r = await client.post("/v2/models/m1/infer", content=ref, headers=headers)
        assert r.status_code == 413 and "max_files=2" in r.json()["error"]
