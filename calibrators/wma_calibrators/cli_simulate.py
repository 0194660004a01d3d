"""``wma calibrate simulate``: its argument parser and handler.

Replays frame scores as live requests (:mod:`wma_calibrators.replay`) and
prints what the bundle's decisions would be (:mod:`wma_calibrators.simulate`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wma_calibrators.console import guarded, say
from wma_calibrators.errors import CalibrateError

MAX_FRAMES_PER_REQUEST = 32  # the gateway's batch limit


def register_simulate(
    sub: Any,
    command: Callable[[Any, str, str, str], argparse.ArgumentParser],
    bundle_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    from wma_calibrators.cli import frames_flag

    p = command(
        sub,
        "simulate",
        "replay frame scores as live requests and report the decisions",
        "Per video, consecutive requests of --frames-per-request frames in frame order (a "
        "shorter last chunk is dropped), each decided with the bundle through the gateway's "
        "core. Reports per method and over all: requests, TPR and FPR among certain requests, "
        "UNCERTAIN share, seconds to the first RED of fake videos (10 frames per 2 s), RED "
        "banners per real participant-hour and banner changes per minute.",
    )
    bundle_arg(p)
    p.add_argument(
        "scores", metavar="SCORES", nargs="?", help="per-frame scores (long layout); or --frames"
    )
    frames_flag(p)
    p.add_argument(
        "--frames-per-request",
        type=int,
        default=10,
        metavar="N",
        help=f"frames per request, 1..{MAX_FRAMES_PER_REQUEST} (default: %(default)s)",
    )
    p.add_argument(
        "--window",
        type=int,
        metavar="W",
        help="each decision sees the last W frames of the participant, W >= N "
        "(default: only the request's own frames)",
    )
    p.add_argument(
        "--tracker",
        action="store_true",
        help="banners as the client SDK's ParticipantTracker shows them (hysteresis) "
        "instead of each answer's banner",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument(
        "--out", metavar="DIR", help="also plot metrics against N and W into DIR (default: none)"
    )
    p.set_defaults(handler=guarded(simulate))


def simulate(args: argparse.Namespace) -> int:
    n, w = args.frames_per_request, args.window
    if not 1 <= n <= MAX_FRAMES_PER_REQUEST:
        raise CalibrateError(
            f"--frames-per-request must be in 1..{MAX_FRAMES_PER_REQUEST}, got {n}"
        )
    if w is not None and w < n:
        raise CalibrateError(f"--window must be at least --frames-per-request ({n}), got {w}")
    if args.out is not None and Path(args.out).is_file():
        raise CalibrateError(f"--out {args.out} is a file, not a directory")

    from wma_core.bundle import load_bundle
    from wma_core.bundle_fusion import fusion_document

    from wma_calibrators.replay import replay, video_frames
    from wma_calibrators.scores import checked_frames
    from wma_calibrators.simulate import format_simulation, simulation_report
    from wma_calibrators.sources import read_scores

    bundle = load_bundle(args.bundle)
    source = read_scores(args.scores, args.frames)
    if source.layout == "wide":
        raise CalibrateError("simulate needs per-frame scores (long or training layout), not wide")
    absent = [m for m in bundle.models if m not in source.model_ids]
    if absent:
        raise CalibrateError(f"scores have no frames of bundle model(s) {', '.join(absent)}")
    videos = video_frames(checked_frames(source.table), tuple(bundle.models))

    def run(frames: int, window: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
        return simulation_report(replay(bundle, videos, frames, window, args.tracker), frames)

    all_, methods = run(n, w)
    if not all_["requests"]:
        raise CalibrateError(f"no video has {n} frames: nothing to replay")
    short = sum(1 for v in videos if v.order.size < n)
    if short:
        say(f"note: {short} video(s) shorter than {n} frames gave no request", err=True)
    if args.json:
        doc = {
            "bundle_sha256": bundle.sha256,
            "fusion": fusion_document(bundle.fusion) or {"kind": "noisy_or"},
            "frames_per_request": n,
            "window": w,
            "tracker": bool(args.tracker),
            "all": all_,
            "methods": methods,
        }
        say(json.dumps(doc, indent=2, sort_keys=True))
    else:
        say(format_simulation(all_, methods))
    if args.out is not None:
        from wma_calibrators.simulate_plots import write_plots

        longest = max(v.order.size for v in videos)
        for path in write_plots(args.out, lambda f, win: run(f, win)[0], n, longest):
            say(f"wrote {path}", err=args.json)
    return 0
