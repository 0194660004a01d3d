"""Fixtures shared by every test directory (pytest loads this rootdir conftest for all).

Plain helpers live in ``tests_support/`` (on pytest's ``pythonpath``); what needs
set-up and tear-down is here: an OTLP/HTTP receiver and an in-process mock model
server. Imports of the services happen inside the fixtures, so the chart and
calibrator tests do not load them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from live_processes import http_ok, wait_for

if TYPE_CHECKING:
    from otlp_receiver import OtlpReceiver

MOCK_MEMBER = "9rfa62j1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--e2e",
        action="store_true",
        help="run only the container end-to-end tests (make e2e: a Docker engine, built images)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The container e2e suite needs a Docker engine and minutes of image builds: it
    # runs in `make e2e` (after `make test` in CI), never inside the unit run.
    e2e = config.getoption("--e2e")
    keep = [item for item in items if (item.get_closest_marker("e2e") is not None) == e2e]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A running test-local OTLP/HTTP receiver (``.endpoint``, ``.received()``)."""
    from otlp_receiver import OtlpReceiver

    running = OtlpReceiver()
    yield running
    running.close()


@pytest.fixture(scope="module")
def mock_member() -> Iterator[str]:
    """An in-process mock model server (model id 9rfa62j1) on loopback, ready; its URL."""
    from wma_local.stack import GatewayThread
    from wma_model_server.app import create_app
    from wma_model_server.settings import ModelServerSettings

    settings = ModelServerSettings(model_id=MOCK_MEMBER, backend="mock")
    server = GatewayThread(create_app(settings)).start()
    try:
        ready = f"{server.url}/v2/health/ready"
        wait_for(lambda: http_ok(ready), "model server not ready", 30)
        yield server.url
    finally:
        server.stop()
