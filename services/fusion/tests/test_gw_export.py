"""Spans leave real processes: a gateway and four model servers export one trace.

A test-local OTLP/HTTP receiver (stdlib ``http.server`` on a free loopback port)
decodes ``POST /v1/traces`` bodies with the OTLP protobuf schema. The gateway and
the ``wma model-server`` processes are configured only by the standard ``OTEL_*``
variables, with a batch schedule delay far beyond the test's length: spans can
only arrive through the flush at shutdown (SIGTERM). The console exporter and the
refusal of exporter settings the gateway cannot honour are checked on real
``wma gateway`` processes too.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from wma_fusion.samples import grey_frame
from wma_fusion.stack import (
    DEFAULT_BUNDLE,
    DEFAULT_MODEL_IDS,
    GatewayThread,
    ModelProcess,
    free_port,
    gateway_config,
    start_model_server,
    wait_ready,
)
from wma_model_server.app import create_app as create_model_server
from wma_model_server.settings import ModelServerSettings

pytestmark = pytest.mark.slow
GW_SERVICE = "wma-gateway-export-test"
SLO_MS = 4321.0
NEVER_MS = "600000"  # OTEL_BSP_SCHEDULE_DELAY: no export before shutdown


@dataclass(frozen=True)
class Exported:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


class OtlpReceiver:
    """``POST /v1/traces`` (protobuf, optionally gzip) on a loopback port, in a thread."""

    def __init__(self) -> None:
        self.spans: list[Exported] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.add(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    exported = Exported(
                        service=str(resource.get("service.name")),
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes=_attributes(span.attributes),
                    )
                    with self.lock:
                        self.spans.append(exported)

    def received(self) -> list[Exported]:
        with self.lock:
            return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in pairs:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


def _env(**otel: str) -> dict[str, str]:
    """This process's environment without its ``OTEL_*`` variables, plus ``otel``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**base, **otel}


class GatewayProcess:
    """``wma gateway`` on a free loopback port; output (stdout and stderr) to a file."""

    def __init__(self, config: Path, log: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "wma_cli.main", "gateway", "--config", str(config)]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*cmd, "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        try:
            self._wait_live()
        except BaseException:
            self.kill()
            raise

    def _wait_live(self) -> None:
        end = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, f"gateway exited:\n{self.output()}"
            try:
                if httpx.get(f"{self.url}/livez", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < end, f"gateway did not start:\n{self.output()}"
            time.sleep(0.1)

    def analyze(self) -> httpx.Response:
        files = [("files", ("f.png", grey_frame(60), "image/png"))]
        return httpx.post(
            f"{self.url}/v1/analyze", data={"participant_id": "p1"}, files=files, timeout=60
        )

    def stop(self) -> int:
        """SIGTERM (the gateway drains, then its lifespan flushes); its exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def write_config(path: Path, endpoints: dict[str, str], **overrides: Any) -> Path:
    doc = gateway_config(endpoints, DEFAULT_BUNDLE.resolve(), reload={"enabled": False})
    doc.update(overrides)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    running = OtlpReceiver()
    yield running
    running.close()


def test_gateway_and_model_servers_export_one_trace_over_otlp(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    otlp = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": NEVER_MS,
    }
    models: list[ModelProcess] = []
    gateway: GatewayProcess | None = None
    try:
        for mid in DEFAULT_MODEL_IDS:
            models.append(start_model_server(mid, tmp_path, env={**otlp, "OTEL_SERVICE_NAME": ""}))
        for model in models:
            wait_ready(model, 60)
        config = write_config(
            tmp_path / "gateway.yaml",
            {m.model_id: m.url for m in models},
            telemetry={"slo_ms": SLO_MS},
        )
        env = _env(**otlp, OTEL_SERVICE_NAME=GW_SERVICE)
        gateway = GatewayProcess(config, tmp_path / "gateway.log", env)
        response = gateway.analyze()
        assert response.status_code == 200, response.text
        assert set(response.json()["models"]) == set(DEFAULT_MODEL_IDS), response.json()
        assert not [s for s in receiver.received() if s.service == GW_SERVICE]  # still queued
        assert gateway.stop() == 0, gateway.output()
        for model in models:
            model.stop()
    finally:
        if gateway is not None:
            gateway.kill()
        for model in models:
            model.stop()

    spans = receiver.received()
    gw_spans = [s for s in spans if s.service == GW_SERVICE]
    (request,) = [s for s in gw_spans if s.name == "POST /v1/analyze"]
    assert request.parent_id == ""  # no incoming traceparent: the gateway starts the trace
    assert request.attributes["wma.slo.target_ms"] == SLO_MS
    assert request.attributes["http.response.status_code"] == 200
    children = [s for s in gw_spans if s.parent_id == request.span_id]
    expected = sorted([f"model {mid}" for mid in DEFAULT_MODEL_IDS] + ["fusion"])
    assert sorted(s.name for s in children) == expected, gw_spans
    assert {s.trace_id for s in gw_spans} == {request.trace_id}
    for call in (s for s in children if s.name.startswith("model ")):
        mid = call.name.removeprefix("model ")
        assert call.attributes["wma.model.status"] == "ok"
        (served,) = [s for s in spans if s.parent_id == call.span_id]
        assert served.service == f"wma-model-server-{mid}"
        assert served.trace_id == request.trace_id
        assert served.name == "POST /v2/models/{model_id}/infer"
        assert served.attributes["http.response.status_code"] == 200


@pytest.fixture(scope="module")
def member() -> Iterator[str]:
    """One in-process mock model server (no tracing of its own)."""
    server = GatewayThread(create_model_server(ModelServerSettings(model_id="9rfa62j1"))).start()
    try:
        end = time.monotonic() + 30
        while httpx.get(f"{server.url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < end, "model server not ready"
            time.sleep(0.05)
        yield server.url
    finally:
        server.stop()


@pytest.mark.parametrize("where", ["env", "config"])
def test_console_exporter_prints_the_request_span(member: str, where: str, tmp_path: Path) -> None:
    telemetry = {"traces_exporter": "console", "service_name": "from-config"}
    env = _env(OTEL_BSP_SCHEDULE_DELAY=NEVER_MS, OTEL_SERVICE_NAME="from-env")
    if where == "env":
        telemetry = {}
        env["OTEL_TRACES_EXPORTER"] = "console"
    config = write_config(tmp_path / "g.yaml", {"9rfa62j1": member}, telemetry=telemetry)
    gateway = GatewayProcess(config, tmp_path / "gateway.log", env)
    try:
        assert gateway.analyze().status_code == 200
        assert gateway.stop() == 0
    finally:
        gateway.kill()
    output = gateway.output()
    assert '"name": "POST /v1/analyze"' in output, output[-3000:]
    assert '"name": "model 9rfa62j1"' in output and '"wma.slo.target_ms": 5000.0' in output
    # An explicit telemetry.service_name wins over OTEL_SERVICE_NAME; else the variable.
    service = "from-config" if where == "config" else "from-env"
    assert f'"service.name": "{service}"' in output


@pytest.mark.parametrize(
    ("otel", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: 'zipkin' is not supported"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not supported",
        ),
    ],
)
def test_unsupported_exporter_settings_are_refused_at_start(
    otel: dict[str, str], named: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "g.yaml", {"9rfa62j1": "http://127.0.0.1:9"})
    cmd = [sys.executable, "-m", "wma_cli.main", "gateway", "--config", str(config)]
    done = subprocess.run(
        [*cmd, "--port", str(free_port())],
        env=_env(**otel),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"wma gateway: invalid config: {named}")
