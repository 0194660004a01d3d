"""The gateway tests' harness: config files, the gateway in-process, analyze requests.

Plain code shared by ``services/fusion/tests`` (its ``conftest.py`` makes fixtures
of it; test modules import the types and :func:`refuse_connections`).
``serve_gateway`` runs ``create_app`` in-process (lifespan included) behind an
``httpx.AsyncClient`` over ``httpx.ASGITransport``, its members reached through
the transport the test gives (in-process apps, ``httpx.MockTransport``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from wma_fusion.app import create_app
from wma_local.threaded import GatewayThread
from wma_model_server.app import create_app as create_model_server
from wma_model_server.settings import ModelServerSettings

GATEWAY_URL = "http://gateway"
WriteConfig = Callable[..., Path]
ServeGateway = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def write_gateway_config(
    path: Path,
    models: Sequence[Mapping[str, Any]] | Mapping[str, str],
    bundle: Path | str,
    **sections: Any,
) -> Path:
    """Write a config atomically (a watching gateway never reads half a file):
    ``models`` as entries, or ``{id: endpoint}``; ``sections`` are the other
    top-level keys (``fanout=...``, ``rollout=...``)."""
    entries = (
        [{"id": mid, "endpoint": url} for mid, url in models.items()]
        if isinstance(models, Mapping)
        else [dict(m) for m in models]
    )
    doc = {"models": entries, "calibrators": {"path": str(bundle)}, **sections}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc))
    tmp.replace(path)
    return path


def refuse_connections(request: httpx.Request) -> httpx.Response:
    """A ``MockTransport`` handler: every member is down (connection refused)."""
    raise httpx.ConnectError("connection refused", request=request)


class Hosts(httpx.AsyncBaseTransport):
    """Members by host name: each host an in-process ASGI app; any other host
    refuses the connection (a member that is down)."""

    def __init__(self, apps: Mapping[str, Any]) -> None:
        self._apps = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._apps.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError("connection refused", request=request)
        return await transport.handle_async_request(request)


@asynccontextmanager
async def serve_gateway(
    config: Path, *, members: httpx.AsyncBaseTransport | None = None, **app_kwargs: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """``async with serve_gateway(config, members=transport, env=...) as client``."""
    app = create_app(config, transport=members, **app_kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=GATEWAY_URL) as client:
            yield client


async def analyze_frames(
    client: httpx.AsyncClient, frames: Sequence[bytes], query: str = "", **fields: Any
) -> httpx.Response:
    """``POST /v1/analyze`` with ``frames`` as PNG parts named ``files``."""
    files = [("files", (f"f{i}.png", frame, "image/png")) for i, frame in enumerate(frames)]
    return await client.post(f"/v1/analyze{query}", data=fields, files=files, timeout=30)


def post_frames(
    url: str,
    frames: Sequence[bytes],
    query: str = "",
    *,
    client: httpx.Client | None = None,
    timeout: float = 30.0,
    **fields: Any,
) -> httpx.Response:
    """The same request over real HTTP to a gateway at ``url`` (a process or a thread)."""
    files = [("files", (f"f{i}.png", frame, "image/png")) for i, frame in enumerate(frames)]
    target = f"{url}/v1/analyze{query}"
    if client is not None:
        return client.post(target, data=fields, files=files, timeout=timeout)
    return httpx.post(target, data=fields, files=files, timeout=timeout)


MOCK_MEMBER_HOST = "member"


@asynccontextmanager
async def running_mock_member(model_id: str = "9rfa62j1", **app_kwargs: Any) -> AsyncIterator[Any]:
    """An in-process mock model server, lifespan running and ready; yields the app
    (reach it as ``http://member`` through ``Hosts({MOCK_MEMBER_HOST: app})``);
    ``app_kwargs`` go to the model server's ``create_app`` (``tracer_provider=``)."""
    from wma_model_server.app import create_app as create_model_server
    from wma_model_server.settings import ModelServerSettings

    settings = ModelServerSettings(model_id=model_id, backend="mock")
    app = create_model_server(settings, **app_kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://member") as client:
            for _ in range(3000):
                if (await client.get("/v2/health/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.01)
            else:
                raise RuntimeError("the in-process mock model server never became ready")
        yield app


@contextmanager
def serving_members(ids: Sequence[str], **settings: Any) -> Iterator[dict[str, str]]:
    """Real mock model servers (uvicorn threads on loopback), one per id, ready:
    ``{id: base URL}``; ``settings`` go to every server's ``ModelServerSettings``."""
    threads = {
        mid: GatewayThread(create_model_server(ModelServerSettings(model_id=mid, **settings)))
        for mid in ids
    }
    try:
        for thread in threads.values():
            thread.start()
        for thread in threads.values():
            end = time.monotonic() + 30
            while httpx.get(f"{thread.url}/v2/health/ready").status_code != 200:
                assert time.monotonic() < end, "a member never became ready"
                time.sleep(0.02)
        yield {mid: t.url for mid, t in threads.items()}
    finally:
        for thread in threads.values():
            thread.stop()
