"""``wma up``: the local stack (4 mock models + legacy) and the gateway in the foreground.

The gateway's port is bound before any child starts, so a busy port is one clear
error (exit 2) instead of five servers started for nothing. SIGINT, SIGTERM and
SIGHUP (a closed terminal) drain the gateway and stop every child; a child also
ends by itself if this process is killed (:mod:`wma_local.lifecycle`). A model
server that dies while the stack runs is reported at once (WARNING with its model
id, exit code and log file); the gateway keeps serving, degraded, without it; the
children stopped by a normal stop are not reported. The
children's logs are in the directory printed at start (``--log-dir`` to choose it);
a temporary one is removed on exit unless a child had died.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wma_local.stack import LocalStack

log = logging.getLogger("wma_fusion.up")
CHILD_POLL_S = 1.0


def register_up(subparsers: Any) -> None:
    up = subparsers.add_parser(
        "up",
        help="run the local stack: 4 mock models, legacy, gateway",
        description="Run four mock model servers, a mock legacy server and the gateway "
        "(in the foreground) on loopback, for local development. Ctrl+C, SIGTERM or "
        "SIGHUP stops everything.",
    )
    up.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    up.add_argument("--host", default="127.0.0.1", help="gateway bind address (default 127.0.0.1)")
    up.add_argument(
        "--calibrators",
        type=Path,
        help="bundle (default: $CALIBRATORS_PATH, else the shipped mock bundle)",
    )
    up.add_argument(
        "--log-dir",
        type=Path,
        help="directory for the model servers' logs and the generated gateway config, kept "
        "on exit (default: a temporary wma-stack-* directory, removed on exit unless a "
        "model server died)",
    )
    up.set_defaults(handler=run_up)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


# A child that exits by SIGTERM at the moment the stack stops was stopped, not lost
# (a container or service manager signals every process of the stack at once).
_STOPPED_CODES = (128 + signal.SIGTERM, -signal.SIGTERM)


def _report_exited(stack: LocalStack, reported: set[str], *, stopping: bool = False) -> None:
    """Log each child that has exited, once; when ``stopping``, not those SIGTERM ended."""
    for model in stack.exited():
        if model.model_id in reported:
            continue
        if stopping and model.process.returncode in _STOPPED_CODES:
            continue
        reported.add(model.model_id)
        log.warning(
            "model server %s (pid %d) exited with code %s; the gateway keeps serving "
            "without it (answers are degraded). Its log: %s",
            model.model_id,
            model.process.pid,
            model.process.returncode,
            model.log_path,
        )


def _watch_children(stack: LocalStack, stop: threading.Event, reported: set[str]) -> None:
    """Report each child that exits while the stack runs, until ``stop``."""
    while not stop.wait(CHILD_POLL_S):
        _report_exited(stack, reported)


def run_up(args: argparse.Namespace) -> int:
    import uvicorn
    from wma_fusion.app import create_app
    from wma_fusion.cli import setup_logging
    from wma_fusion.errors import ConfigError
    from wma_wire import serving

    from wma_local.lifecycle import Terminated, raise_on_signals
    from wma_local.stack import LocalStack, StackError, resolve_bundle

    setup_logging()
    try:
        bundle = resolve_bundle(args.calibrators)
        sock = _bind(args.host, args.port)
    except StackError as exc:
        print(f"wma up: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except OSError as exc:
        print(  # noqa: T201
            f"wma up: error: cannot listen on {args.host}:{args.port}: {exc.strerror} "
            "(is another gateway running there? choose another --port)",
            file=sys.stderr,
        )
        return 2
    stack = LocalStack(bundle_path=bundle, workdir=args.log_dir)
    stop_watch = threading.Event()
    try:
        with raise_on_signals(), stack:
            assert stack.config_path is not None
            for model in stack.models.values():
                log.info(
                    "model server %s on %s (pid %d)", model.model_id, model.url, model.process.pid
                )
            print(f"gateway: http://{args.host}:{args.port}", flush=True)  # noqa: T201
            print(f"logs and gateway config: {stack.workdir}", flush=True)  # noqa: T201
            config = uvicorn.Config(
                create_app(stack.config_path),
                timeout_graceful_shutdown=10,
                loop=serving.LOOP,
                http=serving.HTTP,
            )
            server = uvicorn.Server(config)

            def hang_up(signum: int, frame: FrameType | None) -> None:
                server.handle_exit(signal.SIGTERM, frame)  # drain as for SIGTERM

            signal.signal(signal.SIGHUP, hang_up)
            reported: set[str] = set()
            watcher = threading.Thread(
                target=_watch_children, args=(stack, stop_watch, reported), daemon=True
            )
            watcher.start()
            # uvicorn drains on SIGINT/SIGTERM, then re-raises the signal: Terminated here.
            try:
                server.run(sockets=[sock])
            finally:
                # Before the stack stops its children (their exit, 143, is no warning):
                # the watcher ends, and one last look reports a child that died before.
                stop_watch.set()
                watcher.join(5)
                _report_exited(stack, reported, stopping=True)
    except (Terminated, KeyboardInterrupt):
        pass
    except ConfigError as exc:  # e.g. an unsupported OTEL_TRACES_EXPORTER
        print(f"wma up: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except StackError as exc:
        print(f"wma up: error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        stop_watch.set()
        sock.close()
    if stack.kept_dir is not None:
        print(  # noqa: T201
            f"wma up: a model server had exited; its logs are kept in {stack.kept_dir}",
            file=sys.stderr,
        )
        return 1
    return 0
