"""The handlers of ``wma calibrate ...``: check arguments, call the library, print.

Every argument is checked here before any work starts, so a bad value is one
``error: ...`` line naming the flag (exit 2, see :mod:`wma_calibrators.console`)
rather than a traceback from deep inside numpy or scikit-learn. Library modules
are imported lazily so ``wma --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wma_calibrators.console import progress, say
from wma_calibrators.errors import CalibrateError

if TYPE_CHECKING:
    from wma_calibrators.scores import VideoScores

SEED_MAX = 2**32 - 1  # numpy and scikit-learn seeds are unsigned 32-bit
SYNTH_MAX_VIDEOS = 100_000  # the synthetic set is for tests and demos


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise CalibrateError(message)


def _check_seed(seed: int) -> None:
    _require(0 <= seed <= SEED_MAX, f"--seed must be in 0..{SEED_MAX}, got {seed}")


def _check_out_file(out: str) -> None:
    """Refuse an unwritable --out before the work, not after it."""
    path = Path(out)
    _require(not path.is_dir(), f"--out {out} is a directory, not a file")
    _require(path.parent.is_dir(), f"--out {out}: directory {path.parent} does not exist")


def _load_videos(
    path: str | None,
    frames: list[str],
    aggregators_for: Callable[[tuple[str, ...]], dict[str, str]],
) -> tuple[VideoScores, dict[str, str], dict[str, Any]]:
    from wma_calibrators.scores import video_scores
    from wma_calibrators.sources import read_scores

    source = read_scores(path, frames)
    aggregators = aggregators_for(source.model_ids)
    videos = video_scores(
        source.table, aggregators, progress=progress(), model_ids=source.model_ids
    )
    if videos.dropped:
        say(
            f"note: {videos.dropped} video(s) lacked a score from some model and were left out",
            err=True,
        )
    return videos, aggregators, source.provenance


def fit(args: argparse.Namespace) -> int:
    from wma_core.bundle import write_bundle

    from wma_calibrators import aggregators as agg
    from wma_calibrators.fit import fit_bundle

    _check_out_file(args.out)
    _require(args.folds >= 2, f"--folds must be at least 2, got {args.folds}")
    _check_seed(args.seed)
    rate = args.uncertain_rate
    _require(0.0 < rate < 1.0, f"--uncertain-rate: uncertain rate must be in (0, 1), got {rate}")
    videos, aggregators, provenance = _load_videos(
        args.scores,
        args.frames,
        lambda ids: agg.resolve(ids, args.aggregator, args.aggregator_config),
    )
    if args.created:
        provenance["created"] = args.created
    result = fit_bundle(
        videos,
        aggregators,
        k=args.folds,
        seed=args.seed,
        uncertain_rate=rate,
        provenance=provenance,
        progress=progress(),
        fusion=args.fusion,
    )
    digest = write_bundle(result.bundle, args.out)
    say(result.report)
    say(f"\nwrote {args.out} (sha256 {digest})")
    return 0


def import_legacy(args: argparse.Namespace) -> int:
    from wma_core import Thresholds

    _check_out_file(args.out)
    try:
        thresholds = Thresholds(args.t_low, args.t_high)
    except ValueError as exc:
        raise CalibrateError(f"--t-low/--t-high: {exc}") from None

    from wma_core.bundle import write_bundle

    from wma_calibrators import aggregators as agg
    from wma_calibrators.legacy import legacy_bundle, load_legacy_pickle

    models, sha = load_legacy_pickle(args.pickle, trust=args.trust_pickle)
    aggregators = agg.resolve(models, args.aggregator, args.aggregator_config)
    bundle = legacy_bundle(models, aggregators, thresholds, source_sha256=sha, created=args.created)
    digest = write_bundle(bundle, args.out)
    say(f"wrote {args.out} with {len(models)} model(s) (sha256 {digest})")
    return 0


def report(args: argparse.Namespace) -> int:
    from wma_core.bundle import load_bundle
    from wma_core.bundle_fusion import describe_fusion

    from wma_calibrators.report import write_report

    _require(not Path(args.out).is_file(), f"--out {args.out} is a file, not a directory")
    bundle = load_bundle(args.bundle)
    videos = None
    if args.scores or args.frames:
        wanted = {m: c.aggregator for m, c in bundle.models.items()}
        videos, _, _ = _load_videos(
            args.scores, args.frames, lambda ids: {m: wanted.get(m, "mean") for m in ids}
        )
    written, table = write_report(bundle, args.out, videos)
    if table:
        say(table + "\n")
    else:
        say(describe_fusion(bundle.fusion))
    for path in written:
        say(f"wrote {path}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from wma_core.bundle import load_bundle
    from wma_core.bundle_fusion import describe_fusion

    pin = args.sha256
    _require(
        pin is None or re.fullmatch(r"[0-9a-fA-F]{64}", pin) is not None,
        f"--sha256 must be 64 hex digits, got {pin!r}",
    )
    bundle = load_bundle(args.bundle, expected_sha256=pin)
    say(f"sha256 {bundle.sha256}")
    t = bundle.thresholds
    say(f"valid bundle: {len(bundle.models)} model(s), t_low={t.t_low!r}, t_high={t.t_high!r}")
    for model_id, cal in bundle.models.items():
        lo, hi = cal.curve.output_range
        say(f"  {model_id}: {cal.aggregator}, {cal.curve.x.size} points, output [{lo}, {hi}]")
    say(describe_fusion(bundle.fusion))
    created = bundle.provenance.get("created")
    if created:
        say(f"created {created} by {bundle.provenance.get('tool_version', '?')}")
    return 0


def synth(args: argparse.Namespace) -> int:
    from wma_calibrators.scores import table_format

    _require(
        2 <= args.videos <= SYNTH_MAX_VIDEOS,
        f"--videos must be in 2..{SYNTH_MAX_VIDEOS}, got {args.videos}",
    )
    _check_seed(args.seed)
    _check_out_file(args.out)
    try:
        table_format(args.out)
    except CalibrateError:
        raise CalibrateError(
            f"--out {args.out}: the file name must end in .csv or .parquet"
        ) from None

    from wma_calibrators.synthetic import synthetic_frames, write_frames

    df = synthetic_frames(n_videos=args.videos, seed=args.seed)
    write_frames(df, args.out)
    say(f"wrote {args.out}: {len(df)} frame scores of {args.videos} videos (seed {args.seed})")
    return 0


def _parse_bias(items: list[str]) -> dict[str, float]:
    bias: dict[str, float] = {}
    for item in items:
        model_id, sep, value = item.partition("=")
        try:
            number = float(value) if sep and model_id else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise CalibrateError(f"--bias expects MODEL_ID=FLOAT (a finite number), got {item!r}")
        bias[model_id] = number
    return bias


def verdict_table(args: argparse.Namespace) -> int:
    from wma_core.bundle import load_bundle

    from wma_calibrators.verdict_table import format_ranges, grey_levels

    bias = _parse_bias(args.bias)
    bundle = load_bundle(args.bundle)
    unknown = sorted(set(bias) - set(bundle.models))
    _require(
        not unknown,
        f"--bias names model(s) not in the bundle: {', '.join(unknown)} "
        f"(bundle has {', '.join(bundle.models)})",
    )
    say(format_ranges(grey_levels(bundle, bias)))
    return 0
