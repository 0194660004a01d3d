"""The legacy path client: old query and form, banding, failures as values."""

from __future__ import annotations

import asyncio
import io
import json
import socket

import httpx
import pytest
from PIL import Image
from wma_core import Banner, MemberStatus, Verdict
from wma_fusion.breaker import CircuitBreaker
from wma_fusion.rollout.config import LegacyPath
from wma_fusion.rollout.legacy import band, run_legacy

PATH = LegacyPath(endpoint="http://legacy.test:9005", timeout_s=1.0)  # type: ignore[arg-type]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(buf, format="JPEG")
    return buf.getvalue()


def _run(handler: httpx.MockTransport, path: LegacyPath = PATH, frames: list[bytes] | None = None):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(transport=handler) as client:
            sent = frames if frames is not None else [_jpeg()]
            return await run_legacy(client, path, sent, breaker=CircuitBreaker(5, 10.0))

    return asyncio.run(go())


def _answer(probs: list[float]) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda _req: httpx.Response(
            200, json={"pred_label": "REAL", "confidence": 0.0, "probs": probs}
        )
    )


@pytest.mark.parametrize(
    ("probs", "banner", "verdict"),
    [
        ([0.8, 0.9], Banner.RED, Verdict.FAKE),  # mean 0.85 >= 0.80
        ([0.80], Banner.RED, Verdict.FAKE),  # exactly thr + margin
        ([0.70, 0.75], Banner.YELLOW, Verdict.UNCERTAIN),  # mean 0.725 >= 0.70
        ([0.70], Banner.YELLOW, Verdict.UNCERTAIN),  # exactly thr - margin
        ([0.1, 0.2, 0.3], Banner.GREEN, Verdict.REAL),
    ],
)
def test_mean_probability_is_banded_like_the_old_client(
    probs: list[float], banner: Banner, verdict: Verdict
) -> None:
    result = _run(_answer(probs))
    assert result.status is MemberStatus.OK
    assert (result.banner, result.verdict) == (banner, verdict)
    assert result.mean_prob == pytest.approx(sum(probs) / len(probs))
    assert result.detail() == {
        "mean_prob": result.mean_prob,
        "probs_scored": len(probs),
        "threshold": 0.75,
        "margin": 0.05,
    }


def test_no_scored_frame_is_no_face_with_banner_none() -> None:
    result = _run(_answer([]))
    assert result.status is MemberStatus.NO_FACES
    assert (result.banner, result.verdict, result.mean_prob) == (Banner.NONE, Verdict.NO_FACE, None)


def test_request_carries_the_old_query_and_one_typed_part_per_frame() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"pred_label": "REAL", "confidence": 0.1, "probs": [0.1]})

    frames = [_jpeg(), _png()]
    _run(httpx.MockTransport(handler), frames=frames)
    (request,) = seen
    assert request.url.path == "/check_frame_batch"
    assert dict(request.url.params) == {
        "model_type": "custom",
        "threshold": "0.75",
        "debug": "false",
        "yolo_conf_threshold": "0.8",
    }
    body = request.content
    assert body.count(b'name="files"') == 2
    assert b"Content-Type: image/jpeg" in body and b"Content-Type: image/png" in body
    assert frames[0] in body and frames[1] in body


def test_custom_threshold_and_margin_are_used() -> None:
    path = LegacyPath(endpoint="http://l.test", threshold=0.5, margin=0.1)  # type: ignore[arg-type]
    assert _run(_answer([0.45]), path).banner is Banner.YELLOW
    assert band([0.61], 0.5, 0.1)[0] is Banner.RED


def test_http_error_status_is_an_error_value_naming_the_status() -> None:
    result = _run(httpx.MockTransport(lambda _r: httpx.Response(500, json={"error": "boom"})))
    assert result.status is MemberStatus.ERROR and not result.answered
    assert result.verdict is None and "HTTP 500" in (result.error or "")


@pytest.mark.parametrize(
    "payload",
    [
        {"probs": [1.5]},
        {"probs": "x"},
        ["not", "an", "object"],
        {"probs": [0.1], "pred_label": "?"},
    ],
)
def test_malformed_reply_is_an_error_value(payload: object) -> None:
    result = _run(httpx.MockTransport(lambda _r: httpx.Response(200, content=json.dumps(payload))))
    assert result.status is MemberStatus.ERROR and result.error


def test_slow_legacy_model_times_out_within_its_budget() -> None:
    async def slow(_request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200, json={"probs": [0.1]})

    path = LegacyPath(endpoint="http://l.test", timeout_s=0.2)  # type: ignore[arg-type]
    result = _run(httpx.MockTransport(slow), path)
    assert result.status is MemberStatus.TIMEOUT
    assert "no reply within 0.20s" in (result.error or "")


def test_unreachable_legacy_model_is_an_error_value() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = LegacyPath(endpoint=f"http://127.0.0.1:{port}", timeout_s=2.0)  # type: ignore[arg-type]

    async def go():  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient() as client:
            return await run_legacy(client, path, [_jpeg()], breaker=CircuitBreaker(5, 10.0))

    result = asyncio.run(go())
    assert result.status is MemberStatus.ERROR
    assert "connect error" in (result.error or "")


def test_the_legacy_call_carries_the_request_trace_context() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"pred_label": "REAL", "confidence": 0.1, "probs": [0.1]})

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("POST /v1/analyze") as span:
        _run(httpx.MockTransport(handler))
    trace_id = format(span.get_span_context().trace_id, "032x")
    (request,) = seen
    assert trace_id in request.headers.get("traceparent", "")


def test_a_non_json_error_body_of_the_legacy_model_is_never_echoed() -> None:
    leak = "Traceback: secret internal detail"
    result = _run(httpx.MockTransport(lambda _r: httpx.Response(502, text=leak)))
    assert result.status is MemberStatus.ERROR
    assert "HTTP 502" in (result.error or "") and "secret" not in (result.error or "")
