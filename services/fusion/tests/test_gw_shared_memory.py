"""fanout.shared_memory: the gateway decodes once and members read the pixels from
/dev/shm; every answer is the one the encoded frames give, and whatever cannot go
that way (a member that refuses, a request that does not fit) goes encoded."""

from __future__ import annotations

import builtins
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_harness import WriteConfig, post_frames, serving_members
from jpegs import noise_jpeg
from wma_fusion.app import create_app
from wma_fusion.errors import ConfigError
from wma_local.samples import write_synthetic_bundle
from wma_local.threaded import GatewayThread

IDS = ("9rfa62j1", "1mjgo9w1")
ON = {"shared_memory": {"enabled": True, "slots": 2, "slot_mib": 1}}


def _jpeg(seed: int, size: int = 48) -> bytes:
    return noise_jpeg(seed, size)


FRAMES = [_jpeg(seed) for seed in range(6)]


@pytest.fixture(scope="module")
def shm_members() -> Iterator[dict[str, str]]:
    with serving_members(IDS, shared_memory=True) as urls:
        yield urls


@pytest.fixture(scope="module")
def plain_members() -> Iterator[dict[str, str]]:
    with serving_members(IDS) as urls:
        yield urls


@contextmanager
def _gateway(
    tmp_path: Path, write_config: WriteConfig, members: dict[str, str], **fanout: Any
) -> Iterator[tuple[str, GatewayThread]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    bundle = tmp_path / "bundle.json"
    write_synthetic_bundle(bundle, IDS)
    config = write_config(tmp_path / "gw.yaml", members, bundle, fanout=fanout)
    thread = GatewayThread(create_app(config)).start()
    try:
        yield thread.url, thread
    finally:
        thread.stop()


def _metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(f"{name}_total{{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _scores(body: dict[str, Any]) -> dict[str, Any]:
    models = {
        mid: (m["status"], m["frames_scored"], m["aggregated"], m["calibrated"])
        for mid, m in body["models"].items()
    }
    return {"verdict": body["verdict"], "fusion": body["fusion_score"], "models": models}


def _arena_files() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob(f"wma-gw-{os.getpid()}-*")}


def test_members_read_the_pixels_from_shared_memory_and_answer_exactly_as_encoded(
    tmp_path: Path,
    write_config: WriteConfig,
    shm_members: dict[str, str],
    plain_members: dict[str, str],
) -> None:
    with _gateway(tmp_path / "plain", write_config, plain_members) as (url, _):
        plain = post_frames(url, FRAMES, participant_id="p1")
    before = _arena_files()
    with _gateway(tmp_path / "shm", write_config, shm_members, **ON) as (url, _):
        (arena,) = _arena_files() - before  # the arena exists while it runs
        shared = [post_frames(url, FRAMES, participant_id="p1") for _ in range(3)]
        status = httpx.get(f"{shm_members[IDS[0]]}/v2/systemsharedmemory/status").json()
        staged = _metric(url, "wma_gateway_shared_memory_staging", outcome="staged")
        by_shm = _metric(url, "wma_gateway_member_frames_transport", transport="shared_memory")
        by_http = _metric(url, "wma_gateway_member_frames_transport", transport="http")
    assert _arena_files() == before  # removed at shutdown
    assert plain.status_code == 200, plain.text
    for reply in shared:
        assert reply.status_code == 200, reply.text
        assert _scores(reply.json()) == _scores(plain.json())  # identical, not close
    assert staged == 3
    assert (by_shm, by_http) == (3 * len(IDS), 0)
    assert arena in {region["key"] for region in status}  # registered once, by the gateway


def test_a_member_that_refuses_shared_memory_gets_the_encoded_frames(
    tmp_path: Path,
    write_config: WriteConfig,
    plain_members: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with _gateway(tmp_path / "plain", write_config, plain_members) as (url, _):
        expected = _scores(post_frames(url, FRAMES, participant_id="p1").json())
    with (
        caplog.at_level("WARNING", logger="wma_fusion.upstream"),
        _gateway(tmp_path / "shm", write_config, plain_members, **ON) as (url, _),
    ):
        replies = [post_frames(url, FRAMES, participant_id="p1") for _ in range(3)]
        by_http = _metric(url, "wma_gateway_member_frames_transport", transport="http")
    assert all(_scores(r.json()) == expected for r in replies)
    assert by_http == 3 * len(IDS)
    refusals = [r for r in caplog.records if "refused shared memory" in r.getMessage()]
    assert len(refusals) == len(IDS)  # once per replica, not once per request


def test_a_member_that_forgot_the_region_registers_it_again_within_the_call(
    tmp_path: Path, write_config: WriteConfig, shm_members: dict[str, str]
) -> None:
    with _gateway(tmp_path, write_config, shm_members, **ON) as (url, _):
        first = post_frames(url, FRAMES, participant_id="p1")
        for member in shm_members.values():  # what a restarted member knows
            httpx.post(f"{member}/v2/systemsharedmemory/unregister").raise_for_status()
        second = post_frames(url, FRAMES, participant_id="p1")
        by_shm = _metric(url, "wma_gateway_member_frames_transport", transport="shared_memory")
        failed = _metric(url, "wma_gateway_replica_calls", status="error")
    assert second.status_code == 200 and not second.json()["degraded"]
    assert _scores(second.json()) == _scores(first.json())
    assert by_shm == 2 * len(IDS) and failed == 0


@pytest.mark.parametrize(
    ("frames", "outcome"),
    [
        ([_jpeg(1, 48), _jpeg(2, 40)], "mixed_sizes"),
        ([_jpeg(1), b"\xff\xd8\xff\xe0 truncated jpeg"], "undecodable"),
        ([_jpeg(seed, 224) for seed in range(8)], "too_large"),  # 1.2 MB > 1 MiB slots
    ],
)
def test_a_request_that_cannot_be_staged_goes_encoded_with_the_same_answer(
    tmp_path: Path,
    write_config: WriteConfig,
    shm_members: dict[str, str],
    plain_members: dict[str, str],
    frames: list[bytes],
    outcome: str,
) -> None:
    with _gateway(tmp_path / "plain", write_config, plain_members) as (url, _):
        expected = post_frames(url, frames, participant_id="p1")
    with _gateway(tmp_path / "shm", write_config, shm_members, **ON) as (url, _):
        reply = post_frames(url, frames, participant_id="p1")
        counted = _metric(url, "wma_gateway_shared_memory_staging", outcome=outcome)
        by_http = _metric(url, "wma_gateway_member_frames_transport", transport="http")
    assert reply.status_code == expected.status_code == 200, reply.text
    assert _scores(reply.json()) == _scores(expected.json())
    assert counted == 1 and by_http == len(IDS)


def test_with_every_slot_held_a_request_goes_encoded(
    tmp_path: Path, write_config: WriteConfig, shm_members: dict[str, str]
) -> None:
    with _gateway(tmp_path, write_config, shm_members, **ON) as (url, thread):
        arena = thread.server.config.app.state.gateway.pixels.arena
        held = [arena.acquire(1), arena.acquire(1)]
        reply = post_frames(url, FRAMES, participant_id="p1")
        counted = _metric(url, "wma_gateway_shared_memory_staging", outcome="slots_full")
        for slot in held:
            assert slot is not None
            arena.release(slot)
        again = post_frames(url, FRAMES, participant_id="p1")
        staged = _metric(url, "wma_gateway_shared_memory_staging", outcome="staged")
    assert reply.status_code == again.status_code == 200
    assert _scores(reply.json()) == _scores(again.json())
    assert counted == 1 and staged == 1


def test_shared_memory_without_opencv_is_refused_at_start(
    tmp_path: Path, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_cv2(name: str, *args: Any, **kwargs: Any) -> Any:
        if name in ("cv2", "wma_wire.imaging"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    bundle = tmp_path / "bundle.json"
    write_synthetic_bundle(bundle, IDS)
    config = write_config(
        tmp_path / "gw.yaml",
        dict.fromkeys(IDS, "http://127.0.0.1:9"),
        bundle,
        fanout={"shared_memory": {"enabled": True}},
    )
    monkeypatch.setattr(builtins, "__import__", no_cv2)
    with pytest.raises(ConfigError, match=r"fanout\.shared_memory\.enabled.*OpenCV"):
        create_app(config)
