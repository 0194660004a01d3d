"""The gateway's OpenAPI document says what the routes really answer, and
schemathesis finds nothing it leaves out: the gateway and its two mock members on
real uvicorn servers, bounded examples; the hostile cases on one connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fuzzing import check_documented, fuzz_openapi, hostile_cases, run_hostile
from gateway_harness import WriteConfig, post_frames, serving_members
from schemathesis.core.failures import FailureGroup
from wma_fusion.app import create_app
from wma_local.samples import grey_frame, write_synthetic_bundle
from wma_local.threaded import GatewayThread

IDS = ("9rfa62j1", "1mjgo9w1")
TOKEN = "gw-openapi-token"


@pytest.fixture(scope="module")
def members() -> Iterator[dict[str, str]]:
    with serving_members(IDS) as urls:
        yield urls


@pytest.fixture
def config(tmp_path: Path, write_config: WriteConfig, members: dict[str, str]) -> Path:
    bundle = tmp_path / "bundle.json"
    write_synthetic_bundle(bundle, IDS)
    return write_config(tmp_path / "gw.yaml", members, bundle)


@contextmanager
def _gateway(config: Path, env: dict[str, str]) -> Iterator[tuple[str, Any]]:
    app = create_app(config, env=env)
    thread = GatewayThread(app).start()
    try:
        yield thread.url, app
    finally:
        thread.stop()


@pytest.fixture
def gateway(config: Path) -> Iterator[tuple[str, Any]]:
    with _gateway(config, {}) as served:
        yield served


def test_the_document_lists_the_statuses_the_routes_answer(gateway: tuple[str, Any]) -> None:
    url, _ = gateway
    doc = httpx.get(f"{url}/openapi.json").json()
    ops = {f"{m.upper()} {p}": op for p, o in doc["paths"].items() for m, op in o.items()}
    assert sorted(ops) == ["GET /livez", "GET /metrics", "GET /readyz", "POST /v1/analyze"]
    analyze = ops["POST /v1/analyze"]
    assert sorted(analyze["responses"]) == ["200", "400", "413", "415", "500", "503"]
    for status in ("400", "413", "415", "500", "503"):
        content = analyze["responses"][status]["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    form = analyze["requestBody"]["content"]["multipart/form-data"]
    assert set(form["schema"]["properties"]) == {"files", "participant_id", "meeting_id"}
    assert sorted(ops["GET /readyz"]["responses"]) == ["200", "503"]
    assert list(ops["GET /metrics"]["responses"]["200"]["content"]) == ["text/plain"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert "securitySchemes" not in doc["components"]


def test_the_documented_answer_is_the_one_analyze_gives(gateway: tuple[str, Any]) -> None:
    url, _ = gateway
    r = post_frames(url, [grey_frame(40)], participant_id="p1", meeting_id="m1")
    assert r.status_code == 200, r.text
    check_documented(url, "POST", "/v1/analyze", r)  # the 200 body's schema
    refused = post_frames(url, [b"not an image"], participant_id="p1")
    assert refused.status_code == 415
    check_documented(url, "POST", "/v1/analyze", refused)
    for path in ("/livez", "/readyz", "/metrics"):
        check_documented(url, "GET", path, httpx.get(f"{url}{path}"))
    undocumented = httpx.Response(200, json={"verdict": "MAYBE"}, request=r.request)
    undocumented.elapsed = r.elapsed
    with pytest.raises(FailureGroup) as caught:  # the check can fail
        check_documented(url, "POST", "/v1/analyze", undocumented)
    assert "MAYBE" in str(caught.value.exceptions)


def test_schemathesis_finds_no_5xx_and_no_answer_the_document_leaves_out(
    gateway: tuple[str, Any],
) -> None:
    url, _ = gateway
    report = fuzz_openapi(url, max_examples=16)
    assert report.failures == [], "\n".join(report.failures)
    # refused and served requests both (which refusals depends on what was generated:
    # the hostile cases below pin 415 and 413)
    assert report.calls >= 15 and 400 in report.statuses and 200 in report.statuses


def test_hostile_requests_are_4xx_json_and_the_connection_lives(gateway: tuple[str, Any]) -> None:
    url, _ = gateway
    sent, failures = run_hostile(url, hostile_cases("gateway"), probe="/livez")
    assert failures == [], "\n".join(failures)
    assert sent >= 20


def test_with_a_token_the_document_declares_the_bearer_scheme_and_the_fuzzer_agrees(
    config: Path,
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with _gateway(config, {"WMA_GATEWAY_TOKEN": TOKEN}) as (url, _):
        assert httpx.get(f"{url}/openapi.json").status_code == 401
        doc = httpx.get(f"{url}/openapi.json", headers=auth).json()
        analyze = doc["paths"]["/v1/analyze"]["post"]
        assert analyze["security"] == [{"bearer": []}] and "401" in analyze["responses"]
        assert "401" not in doc["paths"]["/livez"]["get"]["responses"]
        assert "401" not in doc["paths"]["/metrics"]["get"]["responses"]
        report = fuzz_openapi(url, max_examples=4, headers=auth)
        assert report.failures == [], "\n".join(report.failures)
        _, failures = run_hostile(url, hostile_cases("gateway"), probe="/livez", headers=auth)
        assert failures == [], "\n".join(failures)
