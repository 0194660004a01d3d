"""``wma analyze`` and ``wma demo``: send face crops to a gateway and print the answer.

Without ``--gateway`` both start a temporary local stack (:func:`local_gateway`),
which is stopped however the command ends: normally, on an error, on Ctrl+C, on
SIGTERM (``kill``, ``timeout N``) or SIGHUP (a closed terminal). Errors are one
``wma analyze: error: ...`` line; exit 2 for a usage problem or an unreachable
gateway, 1 when the gateway refused the request, 128+N when ended by signal N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_NUM_FRAMES = 27


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def register_analyze(subparsers: Any) -> None:
    analyze = subparsers.add_parser(
        "analyze",
        help="send a directory of face crops to a gateway",
        description="Send the JPEG/PNG face crops of one participant (sorted by file name) to "
        "POST /v1/analyze and print each model's score, the fused score and the verdict. "
        "Without --gateway a temporary local stack of mock models is started and stopped.",
    )
    analyze.add_argument(
        "--image-dir", type=Path, required=True, help="directory of JPEG/PNG face crops (required)"
    )
    analyze.add_argument(
        "--num-frames",
        type=positive_int,
        default=DEFAULT_NUM_FRAMES,
        help=f"send at most this many crops, at least 1 (default {DEFAULT_NUM_FRAMES})",
    )
    analyze.add_argument(
        "--participant-id",
        help="participant id sent to the gateway, 1-128 characters of [A-Za-z0-9._:@-] "
        "(default: the image directory's name, other characters replaced by '-')",
    )
    analyze.add_argument(
        "--participant-name",
        help="display name printed with the result (default: the participant id)",
    )
    analyze.add_argument(
        "--gateway", help="gateway URL, e.g. http://127.0.0.1:8080 (default: a temporary stack)"
    )
    analyze.add_argument(
        "--json", action="store_true", help="print the response JSON instead of a table"
    )
    analyze.set_defaults(handler=run_analyze)

    demo = subparsers.add_parser(
        "demo",
        help="analyze the bundled demo participants",
        description="Analyze the four bundled demo participants (REAL, UNCERTAIN, FAKE, no "
        "face) and print each verdict and banner.",
    )
    demo.add_argument(
        "--gateway", help="gateway URL, e.g. http://127.0.0.1:8080 (default: a temporary stack)"
    )
    demo.set_defaults(handler=run_demo)


def check_gateway_url(text: str) -> str | None:
    """Why ``text`` is not a usable gateway URL, or None when it is one."""
    import httpx

    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        return f"--gateway {text!r} is not a URL: {exc}"
    if url.scheme not in ("http", "https") or not url.host:
        return f"--gateway {text!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:8080"
    return None


def default_participant_id(image_dir: Path) -> str:
    """The directory's name in the participant-id alphabet (1-128 characters)."""
    name = re.sub(r"[^A-Za-z0-9._:@-]", "-", image_dir.resolve().name)[:128]
    return name or "participant"


@contextlib.contextmanager
def local_gateway(bundle: Path | None = None) -> Iterator[str]:
    """A temporary local stack with its gateway on a thread; yields the gateway URL."""
    from wma_fusion.app import create_app
    from wma_fusion.errors import ConfigError

    from wma_local.lifecycle import raise_on_signals
    from wma_local.stack import GatewayThread, LocalStack, StackError, resolve_bundle

    with raise_on_signals(), LocalStack(bundle_path=resolve_bundle(bundle)) as stack:
        assert stack.config_path is not None
        try:
            app = create_app(stack.config_path)
        except ConfigError as exc:  # e.g. an unsupported OTEL_TRACES_EXPORTER
            raise StackError(str(exc)) from None
        server = GatewayThread(app).start()
        try:
            yield server.url
        finally:
            server.stop()


def load_frames(image_dir: Path, num_frames: int) -> list[bytes]:
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [p.read_bytes() for p in paths[:num_frames]]


async def analyze(
    url: str, frames: list[bytes], participant_id: str, name: str | None = None
) -> dict[str, Any]:
    from wma_fusion.auth import gateway_token
    from wma_fusion.client import FusionClient
    from wma_fusion.errors import ConfigError

    from wma_local.stack import StackError

    try:  # the token the gateway checks (WMA_GATEWAY_TOKEN or _FILE), when it is set here
        token = gateway_token(os.environ)
    except ConfigError as exc:
        raise StackError(str(exc)) from None
    async with FusionClient(url, token=token) as client:
        return await client.process_frames(frames, participant_id, name)


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


def _fail(command: str, message: str, code: int) -> int:
    print(f"wma {command}: error: {message}", file=sys.stderr)  # noqa: T201
    return code


def run_analyze(args: argparse.Namespace) -> int:
    import httpx
    from wma_fusion.client import FusionClientError
    from wma_fusion.inputs import PARTICIPANT_ID  # the gateway's own rule

    from wma_local.lifecycle import Terminated, exit_code
    from wma_local.stack import StackError

    if args.gateway is not None and (problem := check_gateway_url(args.gateway)):
        return _fail("analyze", problem, 2)
    if not args.image_dir.is_dir():
        return _fail("analyze", f"{args.image_dir} is not a directory", 2)
    participant_id = args.participant_id or default_participant_id(args.image_dir)
    if not PARTICIPANT_ID.fullmatch(participant_id):
        return _fail("analyze", "--participant-id must be 1-128 characters of [A-Za-z0-9._:@-]", 2)
    frames = load_frames(args.image_dir, args.num_frames)
    if not frames:
        return _fail("analyze", f"no JPEG/PNG files in {args.image_dir}", 2)
    url = args.gateway or "the local stack's gateway"
    try:
        with contextlib.ExitStack() as stack:
            url = args.gateway or stack.enter_context(local_gateway())
            result = asyncio.run(analyze(url, frames, participant_id, args.participant_name))
    except (Terminated, KeyboardInterrupt) as exc:
        stopped = "" if args.gateway else "; the local stack was stopped"
        return _fail("analyze", f"interrupted{stopped}", exit_code(exc))
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        return _fail("analyze", f"cannot reach the gateway at {url}: {reason}", 2)
    except (FusionClientError, StackError) as exc:
        return _fail("analyze", str(exc), 1)
    print(json.dumps(result, indent=2) if args.json else format_result(result))  # noqa: T201
    return 0


def run_demo(args: argparse.Namespace) -> int:
    import httpx

    from wma_local.demo import run
    from wma_local.lifecycle import Terminated, exit_code
    from wma_local.stack import StackError

    if args.gateway is not None and (problem := check_gateway_url(args.gateway)):
        return _fail("demo", problem, 2)
    try:
        return run(args.gateway)
    except (Terminated, KeyboardInterrupt) as exc:
        stopped = "" if args.gateway else "; the local stack was stopped"
        return _fail("demo", f"interrupted{stopped}", exit_code(exc))
    except httpx.TransportError as exc:
        return _fail("demo", f"cannot reach the gateway: {str(exc) or type(exc).__name__}", 2)
    except StackError as exc:
        return _fail("demo", str(exc), 1)
