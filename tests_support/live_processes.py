"""Real processes and servers in tests: free ports, waiting, readiness, clean-up.

Helpers shared by the end-to-end tests that start ``wma`` commands as a user
would: pick a loopback port, wait for a condition or for an HTTP 200, find a
process's children, kill what is still running, and run ``wma gateway`` or
``wma model-server`` until it serves.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

WMA = [sys.executable, "-m", "wma_cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    condition: Callable[[], object], what: str, timeout: float = 90.0, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, what
        time.sleep(interval)


def http_ok(url: str) -> bool:
    """Whether ``GET url`` answers 200 (False when it cannot connect)."""
    try:
        return httpx.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def poll_ok(
    url: str,
    timeout_s: float,
    interval: float,
    request_timeout: float,
    before_each: Callable[[], None] | None = None,
) -> str | None:
    """GET ``url`` until it answers 200: None; after ``timeout_s``, the last answer or error."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if before_each is not None:
            before_each()
        try:
            response = httpx.get(url, timeout=request_timeout)
            if response.status_code == 200:
                return None
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(interval)
    return last


def wait_serving(
    proc: subprocess.Popen[bytes],
    url: str,
    exited: Callable[[], str],
    not_serving: Callable[[], str],
    timeout: float = 60.0,
) -> None:
    """Until ``GET url`` answers 200 while ``proc`` runs; else fail with the messages given."""
    end = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, exited()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < end, not_serving()
        time.sleep(0.1)


def reap(proc: subprocess.Popen[Any], timeout: float | None = None) -> None:
    """Kill ``proc`` if it still runs, and wait for it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout)


def children_of(pid: int) -> dict[int, str]:
    """The child processes of ``pid`` (from /proc): pid -> command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found[int(entry)] = f.read().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


def start_model_server(
    log: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``wma model-server ARGS --port <free>``, output to ``log``, ready; it and its URL."""
    port = free_port()
    cmd = [*WMA, "model-server", *args, "--port", str(port)]
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(
            proc,
            f"{url}/v2/health/ready",
            log.read_text,
            lambda: "model server did not become ready",
        )
    except BaseException:
        reap(proc, 10)
        raise
    return proc, url


class GatewayProcess:
    """``wma gateway`` on a free loopback port; output (stdout and stderr) to a file."""

    def __init__(self, config: Path, log: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [*WMA, "gateway", "--config", str(config)]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*cmd, "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        try:
            wait_serving(
                self.process,
                f"{self.url}/livez",
                lambda: f"gateway exited:\n{self.output()}",
                lambda: f"gateway did not start:\n{self.output()}",
            )
        except BaseException:
            self.kill()
            raise

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """SIGTERM (the gateway drains, then its lifespan flushes); its exit status."""
        self.terminate()
        return self.process.wait(30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        reap(self.process, 10)
