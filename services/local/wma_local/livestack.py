"""The stack the soak and the drills run against: every service its own process.

:class:`LiveStack` starts the local stack's four mock model servers
(:class:`wma_local.stack.LocalStack`, as ``wma up`` does) and the gateway as a
``wma gateway`` process of its own (``wma up`` serves it in its parent; here it
must be a process that can be signalled and measured). It can kill, stop
(SIGSTOP), resume and restart a member on its own port, terminate and restart
the gateway, and read each process's resident memory from ``/proc``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx
import yaml
from wma_core.bundle import CalibratorBundle, load_bundle

from wma_local.children import ModelProcess, spawn_child, start_model_server
from wma_local.stack import DEFAULT_BUNDLE, DEFAULT_MODEL_IDS, LocalStack
from wma_local.threaded import StackError, free_port

__all__ = ["BIASES", "LiveStack", "rss_kib"]

# Members that score the same frame differently, so an answer mixing them up is caught.
BIASES = {"9rfa62j1": 0.0, "1mjgo9w1": 0.03, "dfsesrgu": -0.04, "4vtny88m": 0.01}
GATEWAY = "gateway"


def rss_kib(pid: int) -> int:
    """A process's resident set size (``VmRSS``, KiB) from ``/proc/<pid>/status``."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise StackError(f"no VmRSS for pid {pid}")


class LiveStack:
    """Four mock members and a gateway process on loopback (a context manager).

    ``member_timeout_s`` is each member's timeout in the gateway config (the
    default is the gateway's own, 4 s); ``workdir`` holds the logs and the config.
    """

    def __init__(
        self,
        *,
        model_ids: tuple[str, ...] = DEFAULT_MODEL_IDS,
        bundle_path: Path = DEFAULT_BUNDLE,
        biases: dict[str, float] | None = None,
        member_timeout_s: float | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.biases = dict(BIASES if biases is None else biases)
        self.bundle_path = bundle_path
        self.bundle: CalibratorBundle = load_bundle(bundle_path)
        self.member_timeout_s = member_timeout_s
        self.startup_timeout = startup_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="wma-live-"))
        self.keep_logs = False
        self.members = LocalStack(
            model_ids,
            bundle_path=bundle_path,
            biases=self.biases,
            legacy=False,
            workdir=self.workdir,
            startup_timeout=startup_timeout,
        )
        self.gateway_port = free_port()
        self.gateway: ModelProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def model_ids(self) -> tuple[str, ...]:
        return self.members.model_ids

    def member(self, model_id: str) -> ModelProcess:
        return self.members.models[model_id]

    def __enter__(self) -> LiveStack:
        try:
            self.members.__enter__()
            self.start_gateway()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process; the logs go too unless :attr:`keep_logs` (set it to look
        into a failed run: the logs and the config stay in :attr:`workdir`)."""
        if self.gateway is not None:
            self.gateway.stop()
        for mid in self.model_ids:
            if mid in self.members.models:
                self.resume(mid)  # a stopped process cannot act on SIGTERM
        self.members.stop()
        if not self.keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tails(self, n: int = 1500) -> str:
        """The end of each process's log (for a failure message)."""
        logs = sorted(self.workdir.glob("*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-n:]}" for p in logs)

    def _write_config(self) -> Path:
        models: list[dict[str, object]] = []
        for mid, url in self.members.endpoints().items():
            entry: dict[str, object] = {"id": mid, "endpoint": url}
            if self.member_timeout_s is not None:
                entry["timeout_s"] = self.member_timeout_s
            models.append(entry)
        doc = {
            "models": models,
            "calibrators": {"path": str(self.bundle_path.resolve())},
            "reload": {"enabled": False},
        }
        path = self.workdir / "gateway.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def start_gateway(self) -> ModelProcess:
        """``wma gateway`` on :attr:`gateway_port` (the same port on a restart), ready."""
        config = self._write_config()
        cmd = [sys.executable, "-m", "wma_local.lifecycle", "gateway", "--config", str(config)]
        cmd += ["--port", str(self.gateway_port), "--log-level", "warning"]
        log_path = self.workdir / "gateway.log"
        process = spawn_child(cmd, log_path)
        self.gateway = ModelProcess(GATEWAY, self.gateway_port, process, log_path)
        self.wait_gateway_ready()
        return self.gateway

    def wait_gateway_ready(self) -> None:
        assert self.gateway is not None
        end = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < end:
                if self.gateway.process.poll() is not None:
                    raise StackError("the gateway exited:\n" + self.gateway.log_tail())
                try:
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise StackError("the gateway did not become ready:\n" + self.gateway.log_tail())

    def terminate_gateway(self) -> None:
        """SIGTERM to the gateway (it drains its requests in flight, then exits)."""
        assert self.gateway is not None
        self.gateway.process.send_signal(signal.SIGTERM)

    def signal_member(self, model_id: str, sig: signal.Signals) -> None:
        os.kill(self.member(model_id).process.pid, sig)

    def kill(self, model_id: str) -> None:
        """SIGKILL a member and reap it."""
        self.signal_member(model_id, signal.SIGKILL)
        self.member(model_id).process.wait(10)

    def pause(self, model_id: str) -> None:
        self.signal_member(model_id, signal.SIGSTOP)

    def resume(self, model_id: str) -> None:
        if self.member(model_id).process.poll() is None:
            self.signal_member(model_id, signal.SIGCONT)

    def restart(self, model_id: str) -> ModelProcess:
        """Start a member again on its own port (its old process must have ended); not
        waited for: :meth:`wait_member_ready` says when it is ready."""
        old = self.member(model_id)
        assert old.process.poll() is not None, f"{model_id} still runs"
        new = start_model_server(
            model_id,
            self.workdir,
            port=old.port,
            bias=self.biases.get(model_id, 0.0),
            shared_memory=self.members.shared_memory,
        )
        self.members.models[model_id] = new
        return new

    def wait_member_ready(self, model_id: str, interval: float = 0.02) -> None:
        """Poll the member's ``/v2/health/ready`` every ``interval`` until it answers 200
        (finely: the drills time recovery from this moment)."""
        model = self.member(model_id)
        end = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < end:
                if model.process.poll() is not None:
                    raise StackError(f"{model_id} exited:\n" + model.log_tail())
                try:
                    if client.get(f"{model.url}/v2/health/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(interval)
        raise StackError(f"{model_id} not ready in {self.startup_timeout} s")

    def pids(self) -> dict[str, int]:
        """Every process of the stack: ``"gateway"`` and each model id -> pid."""
        assert self.gateway is not None
        found = {GATEWAY: self.gateway.process.pid}
        found.update({mid: self.member(mid).process.pid for mid in self.model_ids})
        return found

    def rss(self) -> dict[str, int]:
        """Each process's resident memory in KiB (see :meth:`pids`)."""
        return {name: rss_kib(pid) for name, pid in self.pids().items()}
