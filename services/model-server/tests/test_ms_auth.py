"""WMA_MS_TOKEN over a real uvicorn: no request without the right bearer token is
served; the probes and /metrics stay open; a refusal is a 401 JSON naming the
problem, never echoing what was sent, and the connection stays usable."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from wma_local.threaded import GatewayThread  # uvicorn on a thread; serves any app
from wma_model_server.app import create_app
from wma_model_server.settings import ModelServerSettings

TOKEN = "ms-s3cret-token"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (51, 51, 51)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    app = create_app(ModelServerSettings(model_id="m1", token=TOKEN))
    thread = GatewayThread(app).start()
    try:
        end = time.monotonic() + 30
        while httpx.get(f"{thread.url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < end, "the model server never became ready"
            time.sleep(0.02)
        yield thread.url
    finally:
        thread.stop()


PROTECTED = [
    ("POST", "/check_frame_batch"),
    ("POST", "/check_frame"),
    ("POST", "/v2/models/m1/infer"),
    ("GET", "/v2/models/m1"),
    ("GET", "/v2/models/m1/ready"),
    ("GET", "/v2"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/no/such/route"),
]
WRONG = [
    ({}, "missing Authorization header"),
    ({"Authorization": f"Basic {TOKEN}"}, "must use the Bearer scheme"),
    ({"Authorization": TOKEN}, "must use the Bearer scheme"),
    ({"Authorization": "Bearer"}, "invalid bearer token"),
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "invalid bearer token"),  # a prefix
    ({"Authorization": f"Bearer {TOKEN}x"}, "invalid bearer token"),
    ({"Authorization": f"Bearer {TOKEN.upper()}"}, "invalid bearer token"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(("headers", "problem"), WRONG)
def test_no_request_without_the_right_token_is_served(
    server: str, method: str, path: str, headers: dict[str, str], problem: str
) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        r = client.request(
            method,
            path,
            headers=headers,
            files=[("files", ("f.png", _png(), "image/png"))] if method == "POST" else None,
        )
        assert r.status_code == 401, r.text
        assert r.headers["content-type"] == "application/json"
        assert problem in r.json()["error"]
        assert TOKEN not in r.text and TOKEN[:-1] not in r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
        # the body was never read, and the kept-alive connection still serves
        assert client.get("/ping").json() == {"message": "pong"}
        assert len(client._transport._pool.connections) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/ping", "/v2/health/live", "/v2/health/ready", "/metrics"])
def test_probes_and_metrics_stay_open(server: str, path: str) -> None:
    assert httpx.get(f"{server}{path}").status_code == 200


def test_the_right_token_is_served_and_never_logged(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with caplog.at_level(logging.DEBUG):
        r = httpx.post(
            f"{server}/check_frame_batch",
            headers=auth,
            files=[("files", ("f.png", _png(), "image/png"))],
        )
        assert r.status_code == 200 and len(r.json()["probs"]) == 1
        assert httpx.get(f"{server}/v2/models/m1/ready", headers=auth).status_code == 200
        httpx.get(f"{server}/v2/models/m1", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert all(TOKEN not in rec.getMessage() for rec in caplog.records)
    assert any("-> 401: invalid bearer token" in rec.getMessage() for rec in caplog.records)


def test_without_a_token_the_door_is_open() -> None:
    settings = ModelServerSettings(model_id="m1")
    assert settings.bearer_token is None
    app = create_app(settings)
    thread = GatewayThread(app).start()
    try:
        assert httpx.get(f"{thread.url}/v2").status_code == 200
    finally:
        thread.stop()


def test_the_token_never_shows_in_the_settings_or_their_refusal(tmp_path: object) -> None:
    settings = ModelServerSettings(model_id="m1", token=TOKEN)
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    with pytest.raises(ValueError) as caught:
        ModelServerSettings(model_id="m1", token="not allowed " + TOKEN)
    assert TOKEN not in str(caught.value)
    assert "WMA_MS_TOKEN: must be" in str(caught.value)


def test_refusals_are_counted_by_status(server: str) -> None:
    httpx.get(f"{server}/v2")  # no token
    assert 'status="401"' in httpx.get(f"{server}/metrics").text
