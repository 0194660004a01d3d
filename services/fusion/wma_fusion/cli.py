"""``wma gateway``, ``wma up``, ``wma analyze`` and ``wma demo``: thin shells over the gateway.

Heavy imports happen inside the handlers, so ``wma --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wma_fusion.config import GatewayConfig

log = logging.getLogger("wma_fusion.cli")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
GRACE_MARGIN_S = 5.0


def register(subparsers: Any) -> None:
    gateway = subparsers.add_parser("gateway", help="serve the fusion gateway")
    gateway.add_argument("--config", help="gateway YAML (default: $WMA_GATEWAY_CONFIG)")
    gateway.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    gateway.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    gateway.add_argument("--log-level", default="info")
    gateway.set_defaults(handler=run_gateway)

    up = subparsers.add_parser("up", help="run the local stack: 4 mock models, legacy, gateway")
    up.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument(
        "--calibrators",
        type=Path,
        help="bundle (default: $CALIBRATORS_PATH, else the checkout's calibrators/mock.json)",
    )
    up.set_defaults(handler=run_up)

    analyze = subparsers.add_parser("analyze", help="send a directory of face crops")
    analyze.add_argument("--image-dir", type=Path, required=True)
    analyze.add_argument("--num-frames", type=int, default=27)
    analyze.add_argument("--participant-name", default="participant")
    analyze.add_argument("--gateway", help="gateway URL (default: a temporary local stack)")
    analyze.add_argument("--json", action="store_true", help="print the response JSON")
    analyze.set_defaults(handler=run_analyze)

    demo = subparsers.add_parser("demo", help="analyze the bundled demo participants")
    demo.add_argument("--gateway", help="gateway URL (default: a temporary local stack)")
    demo.set_defaults(handler=run_demo)

    from wma_fusion.rollout.cli import register_rollout  # issue 5: ``wma rollout report``

    register_rollout(subparsers)


def _setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def run_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from wma_fusion.app import create_app
    from wma_fusion.config import resolve_config_path
    from wma_fusion.errors import ConfigError

    _setup_logging(args.log_level)
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
        timeout_graceful_shutdown=grace,
    )
    return 0


def graceful_timeout_s(config: GatewayConfig) -> int:
    """How long shutdown waits for requests in flight: each one ends within the
    fan-out deadline (the legacy path's budget is capped by it too), plus a margin."""
    return max(10, math.ceil(config.fanout.deadline_s + GRACE_MARGIN_S))


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    return None


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _local_gateway(bundle: Path | None = None) -> Iterator[str]:
    """A temporary local stack with its gateway on a thread; yields the gateway URL."""
    from wma_fusion.app import create_app
    from wma_fusion.stack import GatewayThread, LocalStack, resolve_bundle

    with LocalStack(bundle_path=resolve_bundle(bundle)) as stack:
        assert stack.config_path is not None
        server = GatewayThread(create_app(stack.config_path)).start()
        try:
            yield server.url
        finally:
            server.stop()


def run_up(args: argparse.Namespace) -> int:
    import uvicorn

    from wma_fusion.app import create_app
    from wma_fusion.stack import LocalStack, StackError, resolve_bundle

    _setup_logging()
    try:
        bundle = resolve_bundle(args.calibrators)
    except StackError as exc:
        print(f"wma up: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    # SIGTERM during start-up must still stop the children (they run in their own groups).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with LocalStack(bundle_path=bundle) as stack:
            assert stack.config_path is not None
            for model in stack.models.values():
                log.info(
                    "model server %s on %s (pid %d)", model.model_id, model.url, model.process.pid
                )
            log.info("gateway config: %s", stack.config_path)
            print(f"gateway: http://{args.host}:{args.port}", flush=True)  # noqa: T201
            config = uvicorn.Config(
                create_app(stack.config_path),
                host=args.host,
                port=args.port,
                timeout_graceful_shutdown=10,
            )
            uvicorn.Server(config).run()  # handles SIGINT/SIGTERM gracefully itself
    except KeyboardInterrupt:
        pass
    return 0


def load_frames(image_dir: Path, num_frames: int) -> list[bytes]:
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [p.read_bytes() for p in paths[:num_frames]]


async def _analyze(url: str, frames: list[bytes], name: str) -> dict[str, Any]:
    from wma_fusion.client import FusionClient

    participant_id = "".join(c if c.isalnum() or c in "._:@-" else "-" for c in name)[:128]
    async with FusionClient(url) as client:
        return await client.process_frames(frames, participant_id or "participant", name)


def format_result(result: dict[str, Any]) -> str:
    def num(value: float | None, digits: int = 6) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    thr = result["thresholds"]
    lo, hi = result["fusion_interval"]
    lines = [
        f"participant {result.get('participant_name') or result['participant_id']}: "
        f"{result['num_frames']} frames",
        f"{'model':<10} {'status':<12} {'scored':>6} {'aggregator':<11} "
        f"{'aggregated':>10} {'calibrated':>10} {'ms':>8}",
    ]
    for mid, m in result["models"].items():
        lines.append(
            f"{mid:<10} {m['status']:<12} {m['frames_scored']:>6} {m['aggregator']:<11} "
            f"{num(m['aggregated']):>10} {num(m['calibrated']):>10} {m['latency_ms']:>8.1f}"
        )
    lines += [
        f"fusion score {num(result['fusion_score'])}  interval [{lo:.6f}, {hi:.6f}]"
        f"{'  (degraded)' if result['degraded'] else ''}",
        f"thresholds t_low={thr['t_low']:.6f} t_high={thr['t_high']:.6f} ({thr['source']})",
        f"verdict {result['verdict']}  confidence {result['confidence']}  "
        f"banner {result['banner']}  ({result['latency_ms']:.0f} ms)",
    ]
    return "\n".join(lines)


def run_analyze(args: argparse.Namespace) -> int:
    from wma_fusion.client import FusionClientError
    from wma_fusion.stack import StackError

    if not args.image_dir.is_dir():
        print(f"wma analyze: {args.image_dir} is not a directory", file=sys.stderr)  # noqa: T201
        return 2
    frames = load_frames(args.image_dir, args.num_frames)
    if not frames:
        print(f"wma analyze: no JPEG/PNG files in {args.image_dir}", file=sys.stderr)  # noqa: T201
        return 2
    with contextlib.ExitStack() as stack:
        try:
            url = args.gateway or stack.enter_context(_local_gateway())
            result = asyncio.run(_analyze(url, frames, args.participant_name))
        except (FusionClientError, StackError) as exc:
            print(f"wma analyze: {exc}", file=sys.stderr)  # noqa: T201
            return 1
    print(json.dumps(result, indent=2) if args.json else format_result(result))  # noqa: T201
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from wma_fusion.demo import run
    from wma_fusion.stack import StackError

    try:
        return run(args.gateway)
    except StackError as exc:
        print(f"wma demo: {exc}", file=sys.stderr)  # noqa: T201
        return 1
