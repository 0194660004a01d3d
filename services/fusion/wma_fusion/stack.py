"""A local ensemble stack on loopback: mock model-server processes and a gateway.

:class:`LocalStack` (a context manager) starts one ``wma model-server`` process per
model id (each in its own process group, its command line naming its id), plus a
fifth mock server for the rollout's legacy path, waits until each is ready, writes a
gateway config pointing at them and, if asked, serves the gateway on a thread. On
exit (or any start failure) every child is stopped: SIGTERM to its group, then
SIGKILL. Used by ``wma up``, ``wma analyze``, the demo, the tests and the benchmark.
:func:`resolve_bundle` finds its calibrator bundle (a wheel does not ship one).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from wma_fusion.threaded import GatewayThread, StackError, free_port

__all__ = [
    "BUNDLE_ENV",
    "DEFAULT_BUNDLE",
    "DEFAULT_MODEL_IDS",
    "LEGACY_MODEL_ID",
    "GatewayThread",
    "LocalStack",
    "ModelProcess",
    "StackError",
    "free_port",
    "gateway_config",
    "resolve_bundle",
    "start_model_server",
    "wait_ready",
]

DEFAULT_MODEL_IDS = ("9rfa62j1", "1mjgo9w1", "dfsesrgu", "4vtny88m")
LEGACY_MODEL_ID = "legacy"
REPO_ROOT = Path(__file__).resolve().parents[3]
# Only in a source checkout (or an editable install): a wheel does not ship it.
DEFAULT_BUNDLE = REPO_ROOT / "calibrators" / "mock.json"
BUNDLE_ENV = "CALIBRATORS_PATH"


def resolve_bundle(
    explicit: Path | None = None,
    env: Mapping[str, str] | None = None,
    default: Path = DEFAULT_BUNDLE,
) -> Path:
    """The local stack's bundle: ``explicit``, else ``$CALIBRATORS_PATH``, else the
    checkout's ``calibrators/mock.json``; a clear :class:`StackError` when none exists."""
    chosen = explicit or Path((os.environ if env is None else env).get(BUNDLE_ENV) or default)
    if not chosen.is_file():
        raise StackError(
            f"calibrator bundle {chosen} not found: set {BUNDLE_ENV} to a bundle file "
            "(or pass `wma up --calibrators PATH`); the default calibrators/mock.json "
            "exists only in a source checkout, not in an installed wheel"
        )
    return chosen


@dataclass
class ModelProcess:
    model_id: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
) -> ModelProcess:
    """Spawn ``wma model-server --model-id ID --backend mock`` on a loopback port."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "wma_cli.main", "model-server", "--model-id", model_id]
    cmd += ["--backend", "mock", "--host", "127.0.0.1", "--port", str(port)]
    if bias:
        cmd += ["--bias", str(bias)]
    log_path = workdir / f"model-{model_id}.log"
    child_env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", **(env or {})}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=child_env,
        )
    return ModelProcess(model_id, port, process, log_path)


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


def gateway_config(
    endpoints: dict[str, str],
    bundle_path: Path,
    legacy_url: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A gateway config document for local endpoints (OIP), as ``wma up`` writes it."""
    doc: dict[str, Any] = {
        "models": [{"id": mid, "endpoint": url} for mid, url in endpoints.items()],
        "calibrators": {"path": str(bundle_path)},
        "reload": {"enabled": True, "interval_s": 2.0},
    }
    if legacy_url is not None:
        doc["rollout"] = {"mode": "ensemble", "legacy": {"endpoint": legacy_url}}
    doc.update(overrides)
    return doc


class LocalStack:
    """Mock model servers (+ legacy server) and a generated gateway config."""

    def __init__(
        self,
        model_ids: tuple[str, ...] = DEFAULT_MODEL_IDS,
        *,
        bundle_path: Path = DEFAULT_BUNDLE,
        biases: dict[str, float] | None = None,
        legacy: bool = True,
        workdir: Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.model_ids = model_ids
        self.bundle_path = bundle_path
        self.biases = biases or {}
        self.legacy = legacy
        self.startup_timeout = startup_timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.workdir = workdir
        self.models: dict[str, ModelProcess] = {}
        self.config_path: Path | None = None

    @property
    def legacy_server(self) -> ModelProcess | None:
        return self.models.get(LEGACY_MODEL_ID)

    def endpoints(self) -> dict[str, str]:
        return {mid: self.models[mid].url for mid in self.model_ids}

    def __enter__(self) -> LocalStack:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="wma-stack-")
            self.workdir = Path(self._tmp.name)
        try:
            ids = list(self.model_ids) + ([LEGACY_MODEL_ID] if self.legacy else [])
            for mid in ids:
                self.models[mid] = start_model_server(
                    mid, self.workdir, bias=self.biases.get(mid, 0.0)
                )
            for model in self.models.values():
                wait_ready(model, self.startup_timeout)
            legacy = self.legacy_server
            doc = gateway_config(
                self.endpoints(), self.bundle_path.resolve(), legacy.url if legacy else None
            )
            self.config_path = self.workdir / "gateway.yaml"
            self.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for model in self.models.values():
            model.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
