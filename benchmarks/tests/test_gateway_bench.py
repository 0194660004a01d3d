"""The gateway benchmark measures a ready gateway or stops: never a starting or dead one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from gateway_bench import wait_ready


class _NotReady(BaseHTTPRequestHandler):
    """Answers every GET 503, as a gateway whose members are not ready yet does."""

    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = b'{"status": "not ready"}'
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def not_ready_url() -> Iterator[str]:
    _NotReady.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotReady)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/readyz"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def running() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait(10)


def test_a_gateway_that_stays_503_stops_the_benchmark_after_the_timeout(
    not_ready_url: str, running: subprocess.Popen[bytes]
) -> None:
    start = time.monotonic()
    with pytest.raises(SystemExit, match=r"not ready .* after 1 s: 503"):
        wait_ready(running, not_ready_url, timeout_s=1.0)
    assert time.monotonic() - start >= 1.0
    # It waits between tries instead of spinning on the 503s.
    assert 2 <= _NotReady.hits <= 15


def test_a_gateway_that_exited_stops_the_benchmark_at_once(not_ready_url: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(10)
    start = time.monotonic()
    with pytest.raises(SystemExit, match="gateway exited with 3"):
        wait_ready(proc, not_ready_url, timeout_s=30.0)
    assert time.monotonic() - start < 5.0
