"""End to end against real mock model-server processes: every verdict, exactly the core's.

The mock backend scores a uniform frame of grey ``v`` as ``v/255 + bias``, so each
test chooses the per-frame probabilities and computes the expected aggregation,
calibration, fusion and verdict itself with :mod:`wma_core` and the bundle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from gateway_harness import post_frames
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from wma_core import decide, fuse, parse_aggregator
from wma_core.bundle import CalibratorBundle, load_bundle
from wma_fusion.app import create_app
from wma_fusion.client import FusionClient, FusionClientError
from wma_local.samples import grey_frame, truncated_frame
from wma_local.stack import DEFAULT_BUNDLE, GatewayThread, LocalStack

pytestmark = pytest.mark.slow
BIASES = {"9rfa62j1": 0.0, "1mjgo9w1": 0.03, "dfsesrgu": -0.04, "4vtny88m": 0.01}


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(biases=BIASES, legacy=False) as running:
        yield running


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def gateway(stack: LocalStack, spans: InMemorySpanExporter) -> Iterator[str]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    assert stack.config_path is not None
    server = GatewayThread(create_app(stack.config_path, tracer_provider=provider)).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def bundle() -> CalibratorBundle:
    return load_bundle(DEFAULT_BUNDLE)


def expected(levels: list[int], bundle: CalibratorBundle) -> dict[str, Any]:
    """What the core says the ensemble must answer for frames of these grey levels."""
    calibrated: dict[str, float | None] = {}
    aggregated: dict[str, float] = {}
    for mid, cal in bundle.models.items():
        probs = [float(np.float32(np.clip(v / 255.0 + BIASES[mid], 0.0, 1.0))) for v in levels]
        agg = parse_aggregator(cal.aggregator)(probs)
        assert agg is not None
        aggregated[mid] = agg
        calibrated[mid] = cal.curve(agg)
    fused = fuse(calibrated, bundle.output_ranges())
    return {
        "aggregated": aggregated,
        "calibrated": calibrated,
        "fused": fused,
        "decision": decide(fused, bundle.thresholds),
    }


def model_calls(url: str) -> float:
    """How many member calls the gateway has made so far (from its /metrics)."""
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return sum(float(x.split()[-1]) for x in lines if x.startswith("wma_gateway_model_calls_total"))


@pytest.mark.parametrize(
    ("levels", "verdict", "banner"),
    [
        ([40, 70, 90, 60, 85, 75], "REAL", "GREEN"),
        ([138, 150, 146, 141, 152, 149, 144], "UNCERTAIN", "YELLOW"),
        ([150, 180, 230, 170, 200, 210, 190, 175], "FAKE", "RED"),
    ],
)
def test_verdict_matches_the_core_exactly(
    gateway: str, bundle: CalibratorBundle, levels: list[int], verdict: str, banner: str
) -> None:
    want = expected(levels, bundle)
    assert want["decision"].verdict.value == verdict  # the levels were chosen for this verdict
    response = post_frames(gateway, [grey_frame(v) for v in levels], participant_id="alice@m1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] == verdict and body["banner"] == banner
    assert body["confidence"] == want["decision"].confidence.value
    assert body["degraded"] is False
    assert body["num_frames"] == len(levels)
    assert body["fusion_score"] == pytest.approx(want["fused"].score, abs=1e-12)
    assert body["fusion_interval"] == pytest.approx([want["fused"].score] * 2, abs=1e-12)
    assert body["thresholds"] == {
        "t_low": bundle.thresholds.t_low,
        "t_high": bundle.thresholds.t_high,
        "source": "bundle",
    }
    assert body["calibrators_sha256"] == bundle.sha256
    assert body["participant_id"] == "alice@m1"
    for mid, model in body["models"].items():
        assert model["status"] == "ok" and model["frames_scored"] == len(levels)
        assert model["aggregator"] == bundle.models[mid].aggregator
        assert model["aggregated"] == pytest.approx(want["aggregated"][mid], abs=1e-12)
        assert model["calibrated"] == pytest.approx(want["calibrated"][mid], abs=1e-12)


def _counter(url: str, name: str, label: str) -> dict[str, float]:
    """``{label value: count}`` of a counter in the gateway's /metrics."""
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
    counts: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == f"{name}_total":
                key = sample.labels[label]
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def test_the_local_stack_decodes_once_and_passes_the_pixels_by_shared_memory(
    stack: LocalStack, gateway: str
) -> None:
    transport = "wma_gateway_member_frames_transport"
    before = _counter(gateway, transport, "transport")
    response = post_frames(gateway, [grey_frame(v) for v in (40, 70, 90)], participant_id="d")
    assert response.status_code == 200, response.text
    after = _counter(gateway, transport, "transport")
    sent = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in ("shared_memory", "http")}
    assert sent == {"shared_memory": len(stack.model_ids), "http": 0}
    member = stack.endpoints()[stack.model_ids[0]]
    extensions = httpx.get(f"{member}/v2").json()["extensions"]
    assert "system_shared_memory" in extensions


def test_frames_that_cannot_be_decoded_give_no_face(gateway: str) -> None:
    response = post_frames(gateway, [truncated_frame(), truncated_frame()], participant_id="bob")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["verdict"], body["banner"], body["confidence"]) == ("NO_FACE", "NONE", "None")
    assert body["fusion_score"] is None and body["degraded"] is False
    assert {m["status"] for m in body["models"].values()} == {"no_faces"}
    assert all(m["aggregated"] is None and m["frames_scored"] == 0 for m in body["models"].values())


def test_undecodable_frames_are_left_out_of_the_score(
    gateway: str, bundle: CalibratorBundle
) -> None:
    levels = [40, 70, 90]
    frames = [grey_frame(v) for v in levels] + [truncated_frame()]
    body = post_frames(gateway, frames, participant_id="carol").json()
    assert body["num_frames"] == 4
    assert {m["frames_scored"] for m in body["models"].values()} == {3}
    assert body["fusion_score"] == pytest.approx(expected(levels, bundle)["fused"].score, abs=1e-12)


@pytest.mark.parametrize(
    ("fields", "files", "status", "needle"),
    [
        ({}, [("files", ("a.png", grey_frame(9), "image/png"))], 400, "participant_id"),
        (
            {"participant_id": "x" * 129},
            [("files", ("a.png", grey_frame(9), "image/png"))],
            400,
            "participant_id",
        ),
        ({"participant_id": "p"}, [], 400, "no frames"),
        ({"participant_id": "p"}, [("files", ("a.gif", b"GIF89a", "image/gif"))], 415, "frame 0"),
        (
            {"participant_id": "p"},
            [("files", ("a.png", b"not an image", "image/png"))],
            415,
            "frame 0",
        ),
        (
            {"participant_id": "p"},
            [("files", (f"{i}.png", grey_frame(9), "image/png")) for i in range(65)],
            413,
            "max_files",
        ),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem_before_any_fanout(
    gateway: str, fields: dict[str, str], files: list[Any], status: int, needle: str
) -> None:
    before = model_calls(gateway)
    if files:
        response = httpx.post(f"{gateway}/v1/analyze", data=fields, files=files, timeout=30)
    else:
        response = httpx.post(
            f"{gateway}/v1/analyze?participant_id=p",
            timeout=30,
            headers={"content-type": "multipart/form-data; boundary=x"},
            content=b"--x--\r\n",
        )
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]
    assert model_calls(gateway) == before


def test_participant_id_may_come_from_the_query(gateway: str) -> None:
    files = [("files", ("a.png", grey_frame(50), "image/png"))]
    response = httpx.post(
        f"{gateway}/v1/analyze?participant_id=q1&meeting_id=m-7", files=files, timeout=30
    )
    assert response.status_code == 200
    assert response.json()["participant_id"] == "q1"
    assert response.json()["meeting_id"] == "m-7"


def test_one_child_span_per_model_under_the_request_span(
    gateway: str, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    spans.clear()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    files = [("files", ("a.png", grey_frame(60), "image/png"))] * 3
    with caplog.at_level(logging.INFO):
        response = httpx.post(
            f"{gateway}/v1/analyze",
            data={"participant_id": "t"},
            files=files,
            headers=headers,
            timeout=30,
        )
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.name == "POST /v1/analyze"]
    assert format(root.context.trace_id, "032x") == trace_id
    assert root.parent is not None and root.parent.span_id == 0x00F067AA0BA902B7
    assert root.attributes is not None
    assert root.attributes["wma.slo.target_ms"] == 5000.0
    assert root.attributes["wma.slo.exceeded"] is False
    calls = [s for s in finished if s.name.startswith("model ")]
    assert sorted(s.attributes["wma.model.id"] for s in calls if s.attributes) == sorted(BIASES)
    for span in calls:
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert span.attributes is not None
        assert span.attributes["wma.frames.sent"] == 3
        assert span.attributes["wma.frames.scored"] == 3
        assert span.attributes["wma.model.status"] == "ok"
    (fusion,) = [s for s in finished if s.name == "fusion"]
    assert fusion.parent is not None and fusion.parent.span_id == root.context.span_id
    assert "Traceback" not in caplog.text


def test_health_and_metrics(gateway: str) -> None:
    assert httpx.get(f"{gateway}/livez").status_code == 200
    ready = httpx.get(f"{gateway}/readyz")
    assert ready.status_code == 200
    models = ready.json()["models"]
    assert set(models) == set(BIASES)
    assert all(m["reachable"] and m["circuit"] == "closed" for m in models.values())
    answer = post_frames(gateway, [grey_frame(60)] * 2, participant_id="metrics")
    assert answer.status_code == 200, answer.text
    verdict, banner = answer.json()["verdict"], answer.json()["banner"]
    text = httpx.get(f"{gateway}/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.value > 0
    }
    # Labelled samples, which an empty registry does not have (its HELP lines do).
    for name, labels in [
        ("wma_gateway_request_seconds_count", {"outcome": "2xx"}),
        ("wma_gateway_model_call_seconds_count", {"model": "9rfa62j1"}),
        ("wma_gateway_model_calls_total", {"model": "9rfa62j1", "status": "ok"}),
        ("wma_gateway_verdicts_total", {"verdict": verdict}),
        ("wma_gateway_banners_total", {"banner": banner}),
    ]:
        assert (name, tuple(sorted(labels.items()))) in samples, name


def test_fusion_client_returns_the_old_clients_fields(
    gateway: str, bundle: CalibratorBundle
) -> None:
    levels = [40, 70, 90]

    async def scenario() -> tuple[dict[str, Any], FusionClientError]:
        async with FusionClient(gateway) as client:
            result = await client.process_frames(
                [grey_frame(v) for v in levels], "dave", participant_name="Dave"
            )
            with pytest.raises(FusionClientError) as info:
                await client.process_frames([b"GIF89a"], "dave")
        return result, info.value

    result, error = asyncio.run(scenario())
    want = expected(levels, bundle)
    assert result["verdict"] == "REAL" and result["participant_name"] == "Dave"
    assert result["num_frames"] == 3 and result["banner"] == "GREEN"
    assert result["fusion_score"] == pytest.approx(want["fused"].score, abs=1e-12)
    assert result["calibrated_scores"] == pytest.approx(want["calibrated"], abs=1e-12)
    assert result["predictions"] == pytest.approx(want["aggregated"], abs=1e-12)
    assert result["thresholds"]["source"] == "bundle"
    assert error.status_code == 415
