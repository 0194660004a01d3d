"""Fixtures for the model-server tests: in-memory images, an in-process server
driven through ``httpx.ASGITransport`` (lifespan included), and tiny Effort
checkpoints written with test-local code (independent of the loader)."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from PIL import Image
from wma_model_server.app import create_app
from wma_model_server.backends.mock import MockBackend
from wma_model_server.settings import ModelServerSettings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def encode(pixels: np.ndarray[Any, Any], fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def uniform_png(value: int, size: int = 8) -> bytes:
    return encode(np.full((size, size, 3), value, dtype=np.uint8))


@pytest.fixture
def png() -> Callable[..., bytes]:
    """``png(value, size=8)``: a uniform-colour PNG (the mock scores it value/255)."""
    return uniform_png


@pytest.fixture
def encode_image() -> Callable[..., bytes]:
    return encode


@pytest.fixture
def bomb_png() -> bytes:
    """A tiny PNG whose header claims 40000x40000 pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)


@pytest.fixture
def face_jpeg() -> bytes:
    """A real face photo shipped by matplotlib (Grace Hopper)."""
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        data: bytes = f.read()
    return data


class GatedBackend(MockBackend):
    """Mock backend whose forward pass waits for ``gate`` (a slow model, deterministically)."""

    def __init__(self, model_id: str) -> None:
        super().__init__(model_id)
        self.gate = threading.Event()
        self.started = threading.Event()

    def predict(self, inputs: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        self.started.set()
        assert self.gate.wait(timeout=20), "test never opened the gate"
        return super().predict(inputs)

    def warmup(self) -> None:
        pass


@pytest.fixture
def gated_backend() -> Callable[[str], GatedBackend]:
    return GatedBackend


Serve = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def serve() -> Serve:
    """``async with serve(model_id="m1", **settings) as client``: app with lifespan, ready."""

    @asynccontextmanager
    async def _serve(
        *, impl: Any = None, wait_ready: bool = True, app_kwargs: Any = None, **settings: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        settings.setdefault("model_id", "m1")
        app = create_app(ModelServerSettings(**settings), backend=impl, **(app_kwargs or {}))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ms") as client:
                client.app = app  # type: ignore[attr-defined]
                if wait_ready:
                    with anyio.fail_after(30):
                        while (await client.get("/v2/health/ready")).status_code != 200:
                            if app.state.model_server.error:
                                break
                            await anyio.sleep(0.01)
                yield client

    return _serve


def files_form(frames: Sequence[bytes], content_type: str = "image/png") -> list[Any]:
    return [("files", (f"f{i}.png", data, content_type)) for i, data in enumerate(frames)]


@pytest.fixture
def form() -> Callable[..., list[Any]]:
    """``form(frames, content_type)``: the ``files`` multipart fields the old client sent."""
    return files_form
