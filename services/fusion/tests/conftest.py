"""Fixtures shared by the gateway tests (the code is ``tests_support/gateway_harness.py``).

``write_config(path, models, bundle, **sections)`` writes a gateway config;
``serve_gateway(config, members=transport)`` runs the gateway in-process behind an
``httpx.AsyncClient``; ``mock_member_app`` is an in-process mock model server
(ready); ``await analyze(client, frames, query="", **fields)`` posts frames to
``/v1/analyze``. Real processes and ports are kept for the suites that need them
(signals, lifecycle, export, end to end).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from gateway_harness import (
    ServeGateway,
    WriteConfig,
    analyze_frames,
    running_mock_member,
    serve_gateway,
    write_gateway_config,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def write_config() -> WriteConfig:
    return write_gateway_config


@pytest.fixture(name="serve_gateway")
def serve_gateway_fixture() -> ServeGateway:
    return serve_gateway


@pytest.fixture
def analyze() -> Callable[..., Any]:
    return analyze_frames


@pytest.fixture
async def mock_member_app() -> AsyncIterator[Any]:
    async with running_mock_member() as app:
        yield app
