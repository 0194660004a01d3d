"""One mock ``wma model-server`` child process of the local stack: start, wait, stop.

Each child runs in its own session (so a terminal's Ctrl+C reaches only the
parent, which then stops the children in order), under the guard of
:mod:`wma_local.lifecycle` so it also ends when its parent dies without cleaning
up. Its output goes to ``model-<id>.log`` in the stack's directory; its command
line names its model id, so ``ps`` tells the servers apart.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from wma_local.lifecycle import PARENT_PID_ENV
from wma_local.threaded import StackError, free_port


@dataclass
class ModelProcess:
    model_id: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    host: str = "127.0.0.1"  # any loopback address (replicas of one model on one port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)


def start_model_server(
    model_id: str,
    workdir: Path,
    *,
    port: int | None = None,
    bias: float = 0.0,
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    decode_threads: int | None = None,
    shared_memory: bool = False,
) -> ModelProcess:
    """Spawn ``wma model-server --model-id ID --backend mock`` on a loopback port
    (``decode_threads``: its ``--decode-threads``, default one per CPU;
    ``shared_memory``: ``--shared-memory``, for a gateway on this host)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "wma_local.lifecycle", "model-server", "--model-id", model_id]
    cmd += ["--backend", "mock", "--host", host, "--port", str(port)]
    if decode_threads is not None:
        cmd += ["--decode-threads", str(decode_threads)]
    if bias:
        cmd += ["--bias", str(bias)]
    if shared_memory:
        cmd.append("--shared-memory")
    log_path = workdir / f"model-{model_id}.log"
    return ModelProcess(model_id, port, spawn_child(cmd, log_path, env), log_path, host)


def spawn_child(
    cmd: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start one of the stack's processes: its own process group, output appended to
    ``log_path``, no stdin, no trace export, told its parent's pid (it stops with it)."""
    child_env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "none",
        PARENT_PID_ENV: str(os.getpid()),
        **(env or {}),
    }
    with log_path.open("ab") as log:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=child_env,
        )


def wait_ready(model: ModelProcess, timeout: float = 60.0) -> None:
    """Poll the server's ``/v2/health/ready`` until 200; raise if it dies or stalls."""
    end = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < end:
            if model.process.poll() is not None:
                raise StackError(
                    f"model server {model.model_id} exited with {model.process.returncode}:\n"
                    + model.log_tail()
                )
            try:
                if client.get(f"{model.url}/v2/health/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise StackError(f"model server {model.model_id} not ready in {timeout}s:\n" + model.log_tail())
