"""The model server's OpenAPI document says what the routes really answer, and
schemathesis finds nothing it leaves out (a real uvicorn, bounded examples)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fuzzing import check_documented, fuzz_openapi, hostile_cases, png, run_hostile
from wma_local.threaded import GatewayThread
from wma_model_server.app import create_app
from wma_model_server.settings import ModelServerSettings

TOKEN = "ms-openapi-token"


def _serve(**settings: Any) -> Iterator[tuple[str, Any]]:
    app = create_app(ModelServerSettings(model_id="m1", **settings))
    thread = GatewayThread(app).start()
    try:
        end = time.monotonic() + 30
        while httpx.get(f"{thread.url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < end, "the model server never became ready"
            time.sleep(0.02)
        yield thread.url, app
    finally:
        thread.stop()


@pytest.fixture
def server() -> Iterator[tuple[str, Any]]:
    yield from _serve()


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": op
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }


def test_the_document_lists_the_statuses_the_routes_answer(server: tuple[str, Any]) -> None:
    url, _ = server
    doc = httpx.get(f"{url}/openapi.json").json()
    ops = _operations(doc)
    statuses = {name: sorted(op["responses"]) for name, op in ops.items()}
    scoring = ["200", "400", "413", "415", "429", "500", "503"]
    assert statuses["POST /check_frame_batch"] == scoring
    assert statuses["POST /check_frame"] == scoring
    assert statuses["POST /v2/models/{model_id}/infer"] == sorted([*scoring, "404"])
    assert statuses["GET /v2/models/{model_id}/ready"] == ["200", "404", "503"]
    assert statuses["GET /v2/health/ready"] == ["200", "503"]
    assert all("422" not in s for s in statuses.values())  # never answered: a query error is 400
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for name, op in ops.items():
        for status, response in op["responses"].items():
            if status != "200":
                assert response["content"]["application/json"]["schema"] == error, (name, status)
    assert list(ops["GET /metrics"]["responses"]["200"]["content"]) == ["text/plain"]
    batch = ops["POST /check_frame_batch"]["requestBody"]["content"]["multipart/form-data"]
    assert batch["schema"]["required"] == ["files"]
    infer = ops["POST /v2/models/{model_id}/infer"]["requestBody"]["content"]
    assert set(infer) == {"application/json", "application/octet-stream"}
    assert infer["application/json"]["schema"]["required"] == ["inputs"]
    assert "securitySchemes" not in doc["components"]  # no token: no 401 either


def test_real_answers_are_what_the_document_declares(server: tuple[str, Any]) -> None:
    url, _ = server
    r = httpx.get(f"{url}/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    check_documented(url, "GET", "/metrics", r)
    frames = [("files", (f"f{i}.png", png(8, 8), "image/png")) for i in range(3)]
    batch = httpx.post(f"{url}/check_frame_batch", files=frames)
    assert batch.status_code == 200 and len(batch.json()["probs"]) == 3
    check_documented(url, "POST", "/check_frame_batch", batch)
    single = httpx.post(f"{url}/check_frame?recrop=false", files={"file": ("f.png", png(8, 8))})
    assert single.status_code == 200, single.text
    check_documented(url, "POST", "/check_frame", single)
    image = base64.b64encode(png(8, 8)).decode()
    body = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": [image]}]}
    infer = httpx.post(f"{url}/v2/models/m1/infer", json=body)
    assert infer.status_code == 200 and infer.json()["model_name"] == "m1"
    check_documented(url, "POST", "/v2/models/{model_id}/infer", infer)
    for path in ("/ping", "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/m1"):
        check_documented(url, "GET", path.replace("/m1", "/{model_id}"), httpx.get(url + path))


def test_schemathesis_finds_no_5xx_and_no_answer_the_document_leaves_out(
    server: tuple[str, Any],
) -> None:
    url, _ = server
    report = fuzz_openapi(url, max_examples=6, path_parameters={"model_id": "m1"})
    assert report.failures == [], "\n".join(report.failures)
    assert report.calls >= 30 and 200 in report.statuses and 400 in report.statuses


def test_with_shared_memory_on_the_fuzzer_finds_no_5xx_either() -> None:
    for url, _ in _serve(shared_memory=True):
        report = fuzz_openapi(
            url,
            max_examples=6,
            operations={
                "GET /v2/systemsharedmemory/status",
                "GET /v2/systemsharedmemory/region/{name}/status",
                "POST /v2/systemsharedmemory/region/{name}/register",
                "POST /v2/systemsharedmemory/region/{name}/unregister",
                "POST /v2/systemsharedmemory/unregister",
                "POST /v2/models/{model_id}/infer",
            },
            path_parameters={"model_id": "m1"},
        )
        assert report.failures == [], "\n".join(report.failures)
        assert 400 in report.statuses and 200 in report.statuses


def test_the_fuzzer_fails_on_a_document_that_leaves_a_status_out(
    server: tuple[str, Any],
) -> None:
    url, app = server
    doc = app.openapi()
    del doc["paths"]["/check_frame_batch"]["post"]["responses"]["415"]  # the doc now lies
    report = fuzz_openapi(url, max_examples=6, operations={"POST /check_frame_batch"})
    assert any("POST /check_frame_batch" in f and "-> 415" in f for f in report.failures)


def test_hostile_requests_are_4xx_json_and_the_connection_lives(server: tuple[str, Any]) -> None:
    url, _ = server
    sent, failures = run_hostile(url, hostile_cases("model-server"), probe="/ping")
    assert failures == [], "\n".join(failures)
    assert sent >= 30


def test_with_a_token_the_document_declares_the_bearer_scheme_and_the_fuzzer_agrees() -> None:
    for url, _ in _serve(token=TOKEN):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        doc = httpx.get(f"{url}/openapi.json", headers=auth).json()
        ops = _operations(doc)
        assert doc["components"]["securitySchemes"] == {
            "bearer": {"type": "http", "scheme": "bearer"}
        }
        assert "401" in ops["POST /check_frame_batch"]["responses"]
        assert "401" not in ops["GET /v2/health/ready"]["responses"]
        assert "security" not in ops["GET /metrics"]
        report = fuzz_openapi(url, max_examples=3, headers=auth, path_parameters={"model_id": "m1"})
        assert report.failures == [], "\n".join(report.failures)
        sent, failures = run_hostile(
            url, hostile_cases("model-server"), probe="/ping", headers=auth
        )
        assert failures == [], "\n".join(failures)
