"""``wma gateway``: serve the fusion gateway.

The local stack's commands are :mod:`wma_local.cli`'s, ``wma rollout`` the tools'
(:mod:`wma_calibrators.rollout.cli`). Heavy imports happen inside the handler, so
``wma --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wma_fusion.config import GatewayConfig

log = logging.getLogger("wma_fusion.cli")
GRACE_MARGIN_S = 5.0
QUIET_LOGGERS = ("httpx", "httpcore")
LOG_LEVELS = ("debug", "info", "warning", "error")  # both logging's and uvicorn's names


def register(subparsers: Any) -> None:
    gateway = subparsers.add_parser(
        "gateway",
        help="serve the fusion gateway",
        description="Serve the fusion gateway (POST /v1/analyze, /livez, /readyz, /metrics) "
        "from a gateway YAML; the file is reloaded when it changes.",
    )
    gateway.add_argument(
        "--config", help="gateway YAML (default: $WMA_GATEWAY_CONFIG; one of the two is required)"
    )
    gateway.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    gateway.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    gateway.add_argument(
        "--log-level",
        default="info",
        choices=LOG_LEVELS,
        help="log level of the gateway and uvicorn: %(choices)s (default %(default)s)",
    )
    gateway.set_defaults(handler=run_gateway)


def setup_logging(level: str = "info") -> None:
    """The gateway's log format; httpx logs every upstream call and probe at INFO: mute it."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_gateway(args: argparse.Namespace) -> int:
    import uvicorn
    from wma_wire import serving

    from wma_fusion.app import create_app
    from wma_fusion.config import resolve_config_path
    from wma_fusion.errors import ConfigError

    setup_logging(args.log_level)
    try:
        app = create_app(resolve_config_path(args.config))
    except ConfigError as exc:
        print(f"wma gateway: invalid config: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    grace = graceful_timeout_s(app.state.gateway.holder.state.config)
    # uvicorn drains, then re-raises the signal it caught under the handlers that were
    # there before it: with these no-op handlers a drained shutdown exits 0, not -15.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _ignore_signal)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        loop=serving.LOOP,
        http=serving.HTTP,
        timeout_graceful_shutdown=grace,
    )
    return 0


def graceful_timeout_s(config: GatewayConfig) -> int:
    """How long shutdown waits for requests in flight: each one ends within the
    fan-out deadline (the legacy path's budget is capped by it too), plus a margin."""
    return max(10, math.ceil(config.fanout.deadline_s + GRACE_MARGIN_S))


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    return None
