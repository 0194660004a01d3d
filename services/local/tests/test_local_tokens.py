"""The local stack with tokens, as a user runs it: ``wma up`` passes WMA_GATEWAY_TOKEN
and WMA_MS_TOKEN from its environment to the gateway and the model servers it
starts, and ``wma analyze`` sends WMA_GATEWAY_TOKEN when it is set."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from importlib import resources
from pathlib import Path

import httpx
import pytest
from live_processes import WMA, children_of, http_ok, reap, wait_for
from wma_local.stack import free_port

pytestmark = pytest.mark.slow

GW_TOKEN = "local-gateway-token"
MS_TOKEN = "local-members-token"
IDS = ("9rfa62j1", "1mjgo9w1", "dfsesrgu", "4vtny88m")


def _analyze(url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    frames = Path(str(resources.files("wma_local") / "demo_frames" / "alice-real"))
    return subprocess.run(
        [*WMA, "analyze", "--image-dir", str(frames), "--gateway", url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_up_with_tokens_serves_only_callers_with_the_token(tmp_path: Path) -> None:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("WMA_")}
    env = {**base, "WMA_GATEWAY_TOKEN": GW_TOKEN, "WMA_MS_TOKEN": MS_TOKEN}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*WMA, "up", "--port", str(port), "--log-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for(lambda: http_ok(f"{url}/readyz"), "gateway not ready", 60, 0.1)
        done = _analyze(url, env)
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout)
        assert {m: r["status"] for m, r in result["models"].items()} == dict.fromkeys(IDS, "ok")

        refused = _analyze(url, base)  # no token here
        assert refused.returncode == 1
        assert "gateway answered 401: missing Authorization header" in refused.stderr
        wrong = _analyze(url, {**base, "WMA_GATEWAY_TOKEN": "not-it"})
        assert "gateway answered 401: invalid bearer token" in wrong.stderr
        assert "not-it" not in wrong.stderr

        ports = [
            m.group(1)
            for c in children_of(proc.pid).values()
            if (m := re.search(r"--port (\d+)", c))
        ]
        assert len(ports) == 5  # four members and the mock legacy server
        for member_port in ports:
            member = f"http://127.0.0.1:{member_port}"
            assert httpx.get(f"{member}/v2/health/ready").status_code == 200
            assert httpx.get(f"{member}/v2").status_code == 401
            auth = {"Authorization": f"Bearer {MS_TOKEN}"}
            assert httpx.get(f"{member}/v2", headers=auth).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        reap(proc)
        stderr = proc.stderr.read() if proc.stderr else ""
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    logs = stderr + "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert GW_TOKEN not in logs and MS_TOKEN not in logs
