"""``wma model-server``: run one model server under uvicorn.

Flags override ``WMA_MS_*`` environment variables. ``--model-id`` is required so
that ``ps`` tells the four servers apart. The checkpoint is loaded before the
port opens, so a refused checkpoint exits at once (status 2) naming the key.
Tracing follows ``OTEL_TRACES_EXPORTER`` (``console`` or ``otlp``; default none), see
:func:`wma_wire.tracing.tracer_provider_from_env`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Literal, get_args, get_origin

from pydantic_core import PydanticUndefined

__all__ = ["register", "run_model_server"]

log = logging.getLogger("wma_model_server")

# Flag -> extra argparse options. Defaults and choices come from ModelServerSettings
# (flags default to None so that WMA_MS_* variables still apply when a flag is absent).
_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--model-id", {"required": True, "help": "model id served (e.g. 9rfa62j1)"}),
    ("--backend", {"help": "scoring backend"}),
    ("--checkpoint", {"help": "Effort checkpoint (.pth), required for --backend effort"}),
    ("--host", {"help": "bind address"}),
    ("--port", {"type": int, "help": "port"}),
    ("--bias", {"type": float, "help": "mock backend: added to every probability"}),
    ("--device", {"help": "cpu, cuda or cuda:N"}),
    ("--dtype", {"help": "model precision (auto: fp32 on every device; tf32: CUDA only)"}),
    ("--cpu-threads", {"type": int, "help": "effort on CPU: torch threads (default: torch's)"}),
    ("--num-heads", {"type": int, "help": "attention heads, if not hidden/64"}),
    ("--max-batch", {"type": int, "help": "frames per forward pass"}),
    ("--max-delay-ms", {"type": float, "help": "batching window"}),
    ("--max-queue-frames", {"type": int, "help": "admitted frames before 429"}),
    ("--decode-threads", {"type": int, "help": "threads decoding frames (default: one per CPU)"}),
    ("--debug-dir", {"help": "opt-in directory where debug=true requests save frames"}),
    (
        "--shared-memory",
        {
            "action": "store_true",
            "default": None,
            "help": "accept decoded frames in registered /dev/shm regions (callers on this host)",
        },
    ),
)


def _field(flag: str) -> str:
    return flag[2:].replace("-", "_")


def _from_settings(flag: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` plus the choices and the shown default of the settings field."""
    from wma_model_server.settings import ModelServerSettings

    info = ModelServerSettings.model_fields[_field(flag)]
    options = dict(options)
    if get_origin(info.annotation) is Literal:
        options["choices"] = list(get_args(info.annotation))
    if info.default is not None and info.default is not PydanticUndefined:
        options["help"] = f"{options['help']} (default {info.default})"
    return options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "model-server", help="serve one detector (legacy API + Open Inference Protocol v2)"
    )
    for flag, options in _FLAGS:
        parser.add_argument(flag, **_from_settings(flag, options))
    parser.add_argument("--log-level", default="info", help="uvicorn/logging level")
    parser.set_defaults(handler=run_model_server)


def run_model_server(args: argparse.Namespace) -> int:
    import uvicorn
    from wma_wire import serving
    from wma_wire.tracing import tracer_provider_from_env

    from wma_model_server.app import create_app
    from wma_model_server.backends import build_backend
    from wma_model_server.exceptions import ModelServerError
    from wma_model_server.settings import ModelServerSettings
    from wma_model_server.telemetry import FlushTracesAtShutdown

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    overrides = {_field(flag): getattr(args, _field(flag)) for flag, _ in _FLAGS}
    try:
        settings = ModelServerSettings(**{k: v for k, v in overrides.items() if v is not None})
        # refused before loading
        provider = tracer_provider_from_env(f"wma-model-server-{settings.model_id}")
        backend = build_backend(settings)
    except (ModelServerError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        print(f"wma model-server: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    app: Any = create_app(settings, backend=backend, tracer_provider=provider)
    if provider is not None:  # flushed at the end of the lifespan, before the process ends
        app = FlushTracesAtShutdown(app, provider)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level.lower(),
        loop=serving.LOOP,
        http=serving.HTTP,
    )
    uvicorn.Server(config).run()
    return 0
