"""Shared-memory regions: the gateway's arena and the model server's registry."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from wma_wire.errors import LimitExceededError
from wma_wire.protocol import decode_infer_request, encode_shared_pixels_request
from wma_wire.shm import (
    SHM_DIR,
    UNKNOWN_REGION,
    PixelArena,
    RegionRegistry,
    remove_stale_arenas,
)
from wma_wire.tensors import ProtocolError


@pytest.fixture
def arena() -> Iterator[PixelArena]:
    made = PixelArena(slots=2, slot_bytes=4096)
    yield made
    made.close()


@pytest.fixture
def registry() -> Iterator[RegionRegistry]:
    made = RegionRegistry(max_regions=2, max_read_bytes=4096)
    yield made
    made.close()


def test_an_arena_is_a_private_file_in_dev_shm_removed_when_it_closes() -> None:
    arena = PixelArena(slots=3, slot_bytes=1000)
    info = arena.path.stat()
    assert arena.path.parent == SHM_DIR
    assert info.st_size == 3000
    assert info.st_mode & 0o777 == 0o600
    arena.close()
    assert not arena.path.exists()


def test_slots_are_handed_out_once_until_released(arena: PixelArena) -> None:
    first, second = arena.acquire(100), arena.acquire(4096)
    assert first is not None and second is not None
    assert {first.offset, second.offset} == {0, 4096}
    assert arena.acquire(1) is None  # all held
    arena.release(first)
    again = arena.acquire(10)
    assert again is not None and again.offset == first.offset
    assert again.array.size == 10


def test_a_tensor_larger_than_a_slot_gets_none(arena: PixelArena) -> None:
    assert arena.acquire(4097) is None
    assert arena.acquire(0) is None
    assert arena.free_slots == 2


def test_what_the_arena_writes_the_registry_reads(
    arena: PixelArena, registry: RegionRegistry
) -> None:
    slot = arena.acquire(6)
    assert slot is not None
    slot.array[:] = [1, 2, 3, 4, 5, 6]
    registry.register("gw", arena.key, 0, arena.size)
    assert registry.read("gw", slot.offset, 6) == bytes([1, 2, 3, 4, 5, 6])
    assert registry.read("gw", slot.offset + 2, 2) == bytes([3, 4])
    assert registry.status() == [
        {"name": "gw", "key": arena.key, "offset": 0, "byte_size": arena.size}
    ]


def test_a_read_is_a_copy_that_later_writes_do_not_change(
    arena: PixelArena, registry: RegionRegistry
) -> None:
    slot = arena.acquire(4)
    assert slot is not None
    slot.array[:] = 7
    registry.register("gw", arena.key, 0, arena.size)
    read = registry.read("gw", slot.offset, 4)
    slot.array[:] = 9
    assert read == bytes([7, 7, 7, 7])


def test_a_region_at_an_offset_reads_relative_to_it(
    arena: PixelArena, registry: RegionRegistry
) -> None:
    slot = arena.acquire(4096)
    assert slot is not None
    slot.array[:] = np.arange(4096) % 251
    registry.register("part", arena.key, 100, 50)
    assert registry.read("part", 0, 3) == bytes([100, 101, 102])
    with pytest.raises(ProtocolError, match="past the end of region 'part'"):
        registry.read("part", 40, 11)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("../etc/passwd", "must match"),
        ("a/b", "must match"),
        ("", "must match"),
        ("wma-no-such-region", "cannot open"),
    ],
)
def test_a_key_that_is_not_a_plain_existing_region_is_refused(
    registry: RegionRegistry, key: str, message: str
) -> None:
    with pytest.raises(ProtocolError, match=message):
        registry.register("gw", key, 0, 10)
    assert registry.status() == []


def test_a_symlink_key_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"x" * 100)
    (tmp_path / "link").symlink_to(target)
    registry = RegionRegistry(directory=tmp_path)
    with pytest.raises(ProtocolError, match="cannot open"):
        registry.register("gw", "link", 0, 10)


def test_a_region_past_the_end_of_its_file_is_refused(
    arena: PixelArena, registry: RegionRegistry
) -> None:
    with pytest.raises(ProtocolError, match="past the end"):
        registry.register("gw", arena.key, 1, arena.size)
    with pytest.raises(ProtocolError, match="at least 1"):
        registry.register("gw", arena.key, 0, 0)


def test_an_unknown_region_is_named_so_that_the_writer_registers_again(
    registry: RegionRegistry,
) -> None:
    with pytest.raises(ProtocolError, match=UNKNOWN_REGION):
        registry.read("gw", 0, 1)


@pytest.mark.parametrize(
    ("name", "offset", "size"),
    [(7, 0, 1), ("gw", -1, 1), ("gw", 0, None), ("gw", True, 1), ("gw", 0, 1.5)],
)
def test_a_malformed_reference_is_a_protocol_error(
    arena: PixelArena, registry: RegionRegistry, name: object, offset: object, size: object
) -> None:
    registry.register("gw", arena.key, 0, arena.size)
    with pytest.raises(ProtocolError):
        registry.read(name, offset, size)


def test_a_read_over_the_cap_is_refused_as_a_limit(
    arena: PixelArena, registry: RegionRegistry
) -> None:
    registry.register("gw", arena.key, 0, arena.size)
    with pytest.raises(LimitExceededError, match="4097 bytes"):
        registry.read("gw", 0, 4097)


def test_registering_a_name_again_replaces_it_and_the_count_is_capped(
    arena: PixelArena, registry: RegionRegistry
) -> None:
    other = PixelArena(slots=1, slot_bytes=10)
    third = PixelArena(slots=1, slot_bytes=10)
    try:
        registry.register("a", arena.key, 0, 10)
        registry.register("a", other.key, 0, 10)
        assert [r["key"] for r in registry.status()] == [other.key]
        registry.register("b", arena.key, 0, 10)
        with pytest.raises(ProtocolError, match="2 shared memory regions"):
            registry.register("c", third.key, 0, 10)
        assert registry.unregister("a") == ["a"]
        registry.register("c", third.key, 0, 10)
        assert sorted(registry.unregister()) == ["b", "c"]
        assert registry.status() == []
    finally:
        other.close()
        third.close()


def test_a_region_whose_owner_removed_it_is_dropped_at_the_next_registration(
    registry: RegionRegistry,
) -> None:
    gone, live = PixelArena(slots=1, slot_bytes=10), PixelArena(slots=1, slot_bytes=10)
    try:
        registry.register("old", gone.key, 0, 10)
        gone.close()  # a gateway that stopped
        registry.register("new", live.key, 0, 10)
        assert [r["name"] for r in registry.status()] == ["new"]
    finally:
        live.close()


def test_a_region_cut_short_by_its_owner_is_refused_not_a_crash(
    arena: PixelArena, registry: RegionRegistry
) -> None:
    registry.register("gw", arena.key, 0, arena.size)
    os.truncate(arena.path, 100)
    with pytest.raises(ProtocolError, match="truncated"):
        registry.read("gw", 0, 200)
    assert registry.read("gw", 0, 100) == bytes(100)


def _dead_pid() -> str:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return child.stdout.strip()


def test_the_arenas_of_dead_gateways_are_removed_and_live_ones_kept() -> None:
    live = PixelArena(slots=1, slot_bytes=10)
    stale = SHM_DIR / f"wma-gw-{_dead_pid()}-0123456789ab"
    stale.write_bytes(b"frames")
    try:
        assert stale in remove_stale_arenas()
        assert live.path.exists()
    finally:
        stale.unlink(missing_ok=True)
        live.close()


def test_a_new_arena_removes_the_one_a_killed_gateway_left() -> None:
    stale = SHM_DIR / f"wma-gw-{_dead_pid()}-0123456789ab"
    stale.write_bytes(b"frames")
    try:
        PixelArena(slots=1, slot_bytes=10).close()
        assert not stale.exists()
    finally:
        stale.unlink(missing_ok=True)


def test_an_infer_request_can_name_its_pixels_in_shared_memory(
    arena: PixelArena, registry: RegionRegistry
) -> None:
    pixels = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    slot = arena.acquire(pixels.size)
    assert slot is not None
    slot.array[:] = pixels.reshape(-1)
    registry.register(arena.name, arena.key, 0, arena.size)
    body, headers = encode_shared_pixels_request("r1", arena.name, slot.offset, [2, 4, 5, 3])
    request = decode_infer_request(body, headers, registry)
    tensor = request.inputs["pixels"]
    assert request.id == "r1"
    assert tensor.datatype == "UINT8"
    np.testing.assert_array_equal(tensor.data, pixels)
    assert request.wants_binary("probs")


def test_a_shared_memory_input_without_a_registry_is_refused(arena: PixelArena) -> None:
    body, headers = encode_shared_pixels_request("r1", arena.name, 0, [1, 2, 2, 3])
    with pytest.raises(ProtocolError, match="shared memory is not enabled"):
        decode_infer_request(body, headers)


def test_a_shared_memory_input_that_also_carries_data_is_refused(
    arena: PixelArena, registry: RegionRegistry
) -> None:
    registry.register(arena.name, arena.key, 0, arena.size)
    body = (
        b'{"inputs":[{"name":"pixels","datatype":"UINT8","shape":[1],"data":[1],'
        b'"parameters":{"shared_memory_region":"' + arena.name.encode() + b'",'
        b'"shared_memory_byte_size":1}}]}'
    )
    with pytest.raises(ProtocolError, match="shared memory and data"):
        decode_infer_request(body, {"content-type": "application/json"}, registry)


def test_a_shared_memory_input_whose_size_does_not_match_its_shape_is_refused(
    arena: PixelArena, registry: RegionRegistry
) -> None:
    registry.register(arena.name, arena.key, 0, arena.size)
    body, headers = encode_shared_pixels_request("r1", arena.name, 0, [1, 2, 2, 3])
    body = body.replace(b'"shared_memory_byte_size":12', b'"shared_memory_byte_size":11')
    with pytest.raises(ProtocolError, match="needs 12 bytes, got 11"):
        decode_infer_request(body, headers, registry)
