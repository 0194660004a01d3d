"""The fan-out encodes a request's frames once: every OIP member gets the same body."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import pytest
import wma_fusion.upstream as upstream
from gateway_harness import Hosts, ServeGateway, WriteConfig, analyze_frames, running_mock_member
from wma_local.samples import grey_frame
from wma_local.stack import DEFAULT_BUNDLE, DEFAULT_MODEL_IDS


class Recording(Hosts):
    """The members, keeping the body of every infer call each one receives."""

    bodies: dict[str, list[bytes]]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/infer"):
            self.bodies.setdefault(request.url.host, []).append(request.content)
        return await super().handle_async_request(request)


@pytest.mark.anyio
async def test_four_oip_members_receive_one_encoding_of_the_frames(
    tmp_path: Path,
    write_config: WriteConfig,
    serve_gateway: ServeGateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encodings: list[int] = []
    real_encode = upstream.encode_infer_request

    def counting(
        request_id: str, images: list[bytes], **kwargs: bool
    ) -> tuple[bytes, dict[str, str]]:
        encodings.append(len(images))
        return real_encode(request_id, images, **kwargs)

    monkeypatch.setattr(upstream, "encode_infer_request", counting)
    hosts = {f"m{i}": mid for i, mid in enumerate(DEFAULT_MODEL_IDS)}
    config = write_config(
        tmp_path / "g.yaml", {mid: f"http://{host}" for host, mid in hosts.items()}, DEFAULT_BUNDLE
    )
    async with contextlib.AsyncExitStack() as stack:
        apps = {
            h: await stack.enter_async_context(running_mock_member(m)) for h, m in hosts.items()
        }
        members = Recording(apps)
        members.bodies = {}
        async with serve_gateway(config, members=members) as gateway:
            frames = [grey_frame(v) for v in (40, 80, 120)]
            answers = [await analyze_frames(gateway, frames, participant_id="p") for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert all(m["status"] == "ok" for a in answers for m in a.json()["models"].values())
    assert encodings == [3, 3]  # once per analyze request, not once per member
    assert sorted(members.bodies) == sorted(hosts)
    for call in range(2):  # each request: the same bytes to all four members
        assert len({bodies[call] for bodies in members.bodies.values()}) == 1
