"""A local ensemble stack on loopback: mock model-server processes and a gateway.

:class:`LocalStack` (a context manager) starts one ``wma model-server`` process per
model id (each in its own process group, its command line naming its id), plus a
fifth mock server for the rollout's legacy path, waits until each is ready and writes a
gateway config pointing at them; the caller serves the gateway (``wma up`` in the
foreground, the others on a :class:`GatewayThread`, re-exported here). On
exit (or any start failure) every child is stopped: SIGTERM to its group, then
SIGKILL; a child also ends by itself when its parent dies (:mod:`wma_local.lifecycle`).
Used by ``wma up``, ``wma analyze``, the demo, the tests and the benchmark.
:func:`resolve_bundle` finds its calibrator bundle (by default the mock bundle
shipped as this package's data).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from wma_local.children import ModelProcess, start_model_server, wait_ready
from wma_local.lifecycle import STACK_DIR_ENV, signals_deferred
from wma_local.threaded import GatewayThread, StackError, free_port

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
# The mock bundle is package data: a wheel ships it, no checkout needed.
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "mock.json"
BUNDLE_ENV = "CALIBRATORS_PATH"
log = logging.getLogger("wma_local.stack")


def resolve_bundle(
    explicit: Path | None = None,
    env: Mapping[str, str] | None = None,
    default: Path = DEFAULT_BUNDLE,
) -> Path:
    """The local stack's bundle: ``explicit``, else ``$CALIBRATORS_PATH``, else the
    mock bundle this package ships; a clear :class:`StackError` when none exists."""
    chosen = explicit or Path((os.environ if env is None else env).get(BUNDLE_ENV) or default)
    if not chosen.is_file():
        raise StackError(
            f"calibrator bundle {chosen} not found: set {BUNDLE_ENV} to a bundle file "
            "(or pass `wma up --calibrators PATH`)"
        )
    return chosen


def gateway_config(
    endpoints: dict[str, str],
    bundle_path: Path,
    legacy_url: str | None = None,
    *,
    shared_memory: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """A gateway config document for local endpoints (OIP), as ``wma up`` writes it
    (``shared_memory``: the members take decoded frames from shared memory)."""
    doc: dict[str, Any] = {
        "models": [{"id": mid, "endpoint": url} for mid, url in endpoints.items()],
        "calibrators": {"path": str(bundle_path)},
        "reload": {"enabled": True, "interval_s": 2.0},
    }
    if shared_memory:
        doc["fanout"] = {"shared_memory": {"enabled": True}}
    if legacy_url is not None:
        doc["rollout"] = {"mode": "ensemble", "legacy": {"endpoint": legacy_url}}
    doc.update(overrides)
    return doc


class LocalStack:
    """Mock model servers (+ legacy server) and a generated gateway config.

    Children's logs and the config live in ``workdir`` (given: kept; else a fresh
    ``wma-stack-*`` temporary directory, removed on exit unless a child had died
    on its own, in which case it is kept for its logs and :attr:`kept_dir` says where).
    """

    def __init__(
        self,
        model_ids: tuple[str, ...] = DEFAULT_MODEL_IDS,
        *,
        bundle_path: Path = DEFAULT_BUNDLE,
        biases: dict[str, float] | None = None,
        legacy: bool = True,
        workdir: Path | None = None,
        startup_timeout: float = 60.0,
        shared_memory: bool = True,
    ) -> None:
        self.model_ids = model_ids
        # all on one host: the gateway decodes each frame once, not once per member
        self.shared_memory = shared_memory
        self.bundle_path = bundle_path
        self.biases = biases or {}
        self.legacy = legacy
        self.startup_timeout = startup_timeout
        self._owns_workdir = workdir is None
        self.workdir = workdir
        self.models: dict[str, ModelProcess] = {}
        self.config_path: Path | None = None
        self.kept_dir: Path | None = None

    @property
    def legacy_server(self) -> ModelProcess | None:
        return self.models.get(LEGACY_MODEL_ID)

    def endpoints(self) -> dict[str, str]:
        return {mid: self.models[mid].url for mid in self.model_ids}

    def exited(self) -> list[ModelProcess]:
        """The children that have ended (on their own, while the stack runs)."""
        return [m for m in self.models.values() if m.process.poll() is not None]

    def __enter__(self) -> LocalStack:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="wma-stack-"))
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            ids = list(self.model_ids) + ([LEGACY_MODEL_ID] if self.legacy else [])
            # Orphaned children (parent SIGKILLed) remove a temporary workdir themselves.
            env = {STACK_DIR_ENV: str(self.workdir)} if self._owns_workdir else None
            # The servers share this machine's cores: their decode pools share them too
            # (one pool per CPU each would oversubscribe them several times over).
            threads = max(1, (os.cpu_count() or 1) // len(ids))
            for mid in ids:
                with signals_deferred():  # a signal mid-spawn would orphan the child
                    self.models[mid] = start_model_server(
                        mid,
                        self.workdir,
                        bias=self.biases.get(mid, 0.0),
                        env=env,
                        decode_threads=threads,
                        shared_memory=self.shared_memory,
                    )
            for model in self.models.values():
                wait_ready(model, self.startup_timeout)
            legacy = self.legacy_server
            doc = gateway_config(
                self.endpoints(),
                self.bundle_path.resolve(),
                legacy.url if legacy else None,
                shared_memory=self.shared_memory,
            )
            self.config_path = self.workdir / "gateway.yaml"
            self.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every child; remove a temporary workdir unless a child had died."""
        died = self.exited()
        for model in self.models.values():
            model.stop()
        if self._owns_workdir and self.workdir is not None and self.kept_dir is None:
            if died:
                self.kept_dir = self.workdir
                log.warning(
                    "kept the local stack's logs in %s (%s exited on its own)",
                    self.workdir,
                    ", ".join(m.model_id for m in died),
                )
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
