"""Rollout modes end to end: real mock model-server processes, real gateways on ports.

The legacy mock server scores a grey frame of level ``v`` as ``v / 255``, so each
test picks the legacy banner by the grey level (thr 0.75, margin 0.05).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from gateway_harness import post_frames
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from wma_cli.main import main
from wma_fusion.app import create_app
from wma_fusion.rollout.canary import in_canary
from wma_local.samples import grey_frame, truncated_frame
from wma_local.stack import GatewayThread, LocalStack, free_port

pytestmark = pytest.mark.slow
KEY_ENV = {"WMA_RECORD_HASH_KEY": "e2e-key"}
SALT = "e2e-salt"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(legacy=True) as running:
        yield running


def with_rollout(stack: LocalStack, path: Path, rollout: dict[str, Any], **top: Any) -> Path:
    """The stack's own config with a different ``rollout`` section, swapped in atomically."""
    assert stack.config_path is not None
    doc = yaml.safe_load(stack.config_path.read_text())
    legacy = doc["rollout"]["legacy"]
    doc["rollout"] = {"legacy": legacy, "canary_salt": SALT, **rollout}
    doc.update(top)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.replace(path)
    return path


def gateway(config: Path) -> GatewayThread:
    return GatewayThread(create_app(config, env=KEY_ENV)).start()


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("level", "verdict", "banner"),
    [(220, "FAKE", "RED"), (185, "UNCERTAIN", "YELLOW"), (40, "REAL", "GREEN")],
)
def test_legacy_mode_serves_the_old_single_model_banding(
    stack: LocalStack, tmp_path: Path, level: int, verdict: str, banner: str
) -> None:
    server = gateway(with_rollout(stack, tmp_path / "gw.yaml", {"mode": "legacy"}))
    try:
        response = post_frames(
            server.url, [grey_frame(level)] * 3, participant_id="alice", meeting_id="m1"
        )
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    assert "wma_gateway_model_calls_total{" not in metrics  # the ensemble did not run
    assert f'wma_gateway_banners_total{{banner="{banner}"}} 1.0' in metrics
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["verdict"], body["banner"]) == (verdict, banner)
    assert (body["mode"], body["served_by"]) == ("legacy", "legacy")
    assert body["participant_id"] == "alice" and body["meeting_id"] == "m1"
    assert body["num_frames"] == 3 and body["latency_ms"] > 0
    assert body["legacy"]["mean_prob"] == pytest.approx(level / 255, abs=1e-6)
    assert body["legacy"] | {"mean_prob": 0} == {
        "mean_prob": 0,
        "probs_scored": 3,
        "threshold": 0.75,
        "margin": 0.05,
    }
    assert "models" not in body


def test_legacy_mode_with_no_scored_frame_is_no_face(stack: LocalStack, tmp_path: Path) -> None:
    server = gateway(with_rollout(stack, tmp_path / "gw.yaml", {"mode": "legacy"}))
    try:
        response = post_frames(server.url, [truncated_frame()], participant_id="bob")
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["verdict"], body["banner"], body["legacy"]["probs_scored"]) == (
        "NO_FACE",
        "NONE",
        0,
    )


def test_legacy_failure_is_a_503_in_legacy_mode(stack: LocalStack, tmp_path: Path) -> None:
    dead = {"endpoint": f"http://127.0.0.1:{free_port()}", "timeout_s": 2.0}
    config = with_rollout(stack, tmp_path / "gw.yaml", {"mode": "legacy"})
    doc = yaml.safe_load(config.read_text())
    doc["rollout"]["legacy"] = dead
    config.write_text(yaml.safe_dump(doc))
    server = gateway(config)
    try:
        response = post_frames(server.url, [grey_frame(100)], participant_id="carol")
    finally:
        server.stop()
    assert response.status_code == 503
    assert "legacy model: connect error" in response.json()["error"]


def test_shadow_mode_serves_legacy_and_records_both_paths(
    stack: LocalStack, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    rollout = {"mode": "shadow", "records": {"log": False, "file": str(records)}}
    server = gateway(with_rollout(stack, tmp_path / "gw.yaml", rollout))
    try:
        body = post_frames(
            server.url, [grey_frame(40)] * 4, participant_id="dave", meeting_id="m9"
        ).json()
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()  # drains the shadow task, so the record is on disk
    assert (body["mode"], body["served_by"], body["banner"]) == ("shadow", "legacy", "GREEN")
    (record,) = read_records(records)
    assert record["mode"] == "shadow" and record["served_by"] == "legacy"
    assert record["legacy"]["banner"] == "GREEN" and record["legacy"]["status"] == "ok"
    assert record["ensemble"]["status"] == "ok" and record["ensemble"]["verdict"] == "REAL"
    assert record["num_frames"] == 4 and len(record["calibrators_sha256"]) == 64
    assert "dave" not in records.read_text() and "m9" not in records.read_text()
    assert 'wma_rollout_served_total{mode="shadow",served_by="legacy"} 1.0' in metrics


def test_shadow_mode_ensemble_failure_never_fails_the_served_answer(
    stack: LocalStack, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    rollout = {"mode": "shadow", "records": {"log": False, "file": str(records)}}
    config = with_rollout(stack, tmp_path / "gw.yaml", rollout, fanout={"deadline_s": 1.0})
    doc = yaml.safe_load(config.read_text())
    for model in doc["models"]:  # every member down
        model["endpoint"] = f"http://127.0.0.1:{free_port()}"
    config.write_text(yaml.safe_dump(doc))
    server = gateway(config)
    try:
        response = post_frames(server.url, [grey_frame(220)] * 2, participant_id="erin")
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    assert (response.json()["served_by"], response.json()["banner"]) == ("legacy", "RED")
    (record,) = read_records(records)
    assert record["ensemble"]["status"] == "error"
    assert "no ensemble member answered" in record["ensemble"]["error"]
    assert 'wma_rollout_agreement_total{ensemble_banner="ERROR",legacy_banner="RED"} 1.0' in metrics


def test_ensemble_mode_serves_the_ensemble(stack: LocalStack, tmp_path: Path) -> None:
    server = gateway(with_rollout(stack, tmp_path / "gw.yaml", {"mode": "ensemble"}))
    try:
        body = post_frames(server.url, [grey_frame(40)] * 3, participant_id="frank").json()
    finally:
        server.stop()
    assert (body["mode"], body["served_by"]) == ("ensemble", "ensemble")
    assert set(body["models"]) == set(stack.model_ids) and "legacy" not in body


def test_canary_routes_by_stable_hash_and_two_gateways_agree(
    stack: LocalStack, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    rollout = {
        "mode": "canary",
        "canary_percent": 50.0,
        "records": {"log": False, "file": str(records)},
    }
    config = with_rollout(stack, tmp_path / "gw.yaml", rollout)
    ids = [f"user-{i}" for i in range(16)]
    first, second = gateway(config), gateway(config)
    try:
        served = {
            url: [
                post_frames(url, [grey_frame(60)], participant_id=pid).json()["served_by"]
                for pid in ids
            ]
            for url in (first.url, second.url)
        }
        again = [
            post_frames(first.url, [grey_frame(60)], participant_id=pid).json()["served_by"]
            for pid in ids
        ]
    finally:
        first.stop()
        second.stop()
    expected = ["ensemble" if in_canary(pid, 50.0, SALT) else "legacy" for pid in ids]
    assert served[first.url] == served[second.url] == again == expected
    assert {"ensemble", "legacy"} <= set(expected)  # the sample has both sides
    rows = read_records(records)
    assert len(rows) == 3 * len(ids)  # shadow_other_path: every request is compared
    assert {r["served_by"] for r in rows} == {"ensemble", "legacy"}
    # The report reads what the gateway recorded.
    assert main(["rollout", "report", str(records), "--out", str(tmp_path / "report")]) == 0
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["records"] == len(rows) and summary["paths"]["legacy"]["errors"] == 0


def test_shadow_mode_without_a_hash_key_warns_at_startup(
    stack: LocalStack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = with_rollout(stack, tmp_path / "gw.yaml", {"mode": "shadow"})
    with caplog.at_level(logging.WARNING, logger="wma.rollout"):
        create_app(config, env={})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("WMA_RECORD_HASH_KEY is not set" in m for m in warnings)


def test_spans_name_the_mode_and_the_legacy_call(stack: LocalStack, tmp_path: Path) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    config = with_rollout(stack, tmp_path / "gw.yaml", {"mode": "legacy"})
    server = GatewayThread(create_app(config, env=KEY_ENV, tracer_provider=provider)).start()
    try:
        assert post_frames(server.url, [grey_frame(40)], participant_id="gina").status_code == 200
    finally:
        server.stop()
    by_name = {s.name: s for s in spans.get_finished_spans()}
    request, call = by_name["POST /v1/analyze"], by_name["legacy model"]
    assert request.attributes is not None and call.attributes is not None
    assert request.attributes["wma.rollout.mode"] == "legacy"
    assert request.attributes["wma.rollout.served_by"] == "legacy"
    assert call.parent is not None and call.parent.span_id == request.context.span_id
    assert call.attributes["wma.legacy.status"] == "ok"
