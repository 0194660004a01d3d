"""``wma calibrate ...``: fit, import-legacy, report, verify, synth, verdict-table.

Handlers import their modules lazily so ``wma --help`` stays fast. Every user
error (bad input, invalid bundle, untrusted pickle) is one line on stderr and
exit code 2; success is 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wma_calibrators.bundle import BundleError
from wma_calibrators.errors import CalibrateError

if TYPE_CHECKING:
    from wma_calibrators.scores import VideoScores

Handler = Callable[[argparse.Namespace], int]


def _say(text: str, *, err: bool = False) -> None:
    """Command output: results to stdout, diagnostics to stderr."""
    (sys.stderr if err else sys.stdout).write(text + "\n")


def _guarded(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except BundleError as exc:
            _say(f"error: invalid bundle: {exc}", err=True)
        except CalibrateError as exc:
            _say(f"error: {exc}", err=True)
        return 2

    return run


def _progress() -> bool:
    return sys.stderr.isatty()


def _load_videos(
    path: str, aggregators_for: Callable[[tuple[str, ...]], dict[str, str]]
) -> tuple[VideoScores, dict[str, str], str]:
    from wma_calibrators.scores import model_ids_of, read_table, video_scores

    df, sha = read_table(path)
    aggregators = aggregators_for(model_ids_of(df))
    videos = video_scores(df, aggregators, progress=_progress())
    if videos.dropped:
        _say(
            f"note: {videos.dropped} video(s) lacked a score from some model and were left out",
            err=True,
        )
    return videos, aggregators, sha


def _fit(args: argparse.Namespace) -> int:
    from wma_calibrators import aggregators as agg
    from wma_calibrators.bundle import write_bundle
    from wma_calibrators.fit import fit_bundle

    videos, aggregators, sha = _load_videos(
        args.scores, lambda ids: agg.resolve(ids, args.aggregator, args.aggregator_config)
    )
    provenance = {"source_sha256": sha, "source_name": Path(args.scores).name}
    if args.created:
        provenance["created"] = args.created
    result = fit_bundle(
        videos,
        aggregators,
        k=args.folds,
        seed=args.seed,
        uncertain_rate=args.uncertain_rate,
        provenance=provenance,
        progress=_progress(),
    )
    digest = write_bundle(result.bundle, args.out)
    _say(result.report)
    _say(f"\nwrote {args.out} (sha256 {digest})")
    return 0


def _import_legacy(args: argparse.Namespace) -> int:
    import hashlib

    from wma_core import Thresholds

    from wma_calibrators import aggregators as agg
    from wma_calibrators.bundle import write_bundle
    from wma_calibrators.legacy import legacy_bundle, load_legacy_pickle

    models = load_legacy_pickle(args.pickle, trust=args.trust_pickle)
    aggregators = agg.resolve(models, args.aggregator, args.aggregator_config)
    try:
        thresholds = Thresholds(args.t_low, args.t_high)
    except ValueError as exc:
        raise CalibrateError(str(exc)) from None
    sha = hashlib.sha256(Path(args.pickle).read_bytes()).hexdigest()
    bundle = legacy_bundle(models, aggregators, thresholds, source_sha256=sha, created=args.created)
    digest = write_bundle(bundle, args.out)
    _say(f"wrote {args.out} with {len(models)} model(s) (sha256 {digest})")
    return 0


def _report(args: argparse.Namespace) -> int:
    from wma_calibrators.bundle import load_bundle
    from wma_calibrators.report import write_report

    bundle = load_bundle(args.bundle)
    videos = None
    if args.scores:
        wanted = {m: c.aggregator for m, c in bundle.models.items()}
        videos, _, _ = _load_videos(
            args.scores, lambda ids: {m: wanted.get(m, "mean") for m in ids}
        )
    written, table = write_report(bundle, args.out, videos)
    if table:
        _say(table + "\n")
    for path in written:
        _say(f"wrote {path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from wma_calibrators.bundle import load_bundle

    bundle = load_bundle(args.bundle, expected_sha256=args.sha256)
    _say(f"sha256 {bundle.sha256}")
    t = bundle.thresholds
    _say(f"valid bundle: {len(bundle.models)} model(s), t_low={t.t_low!r}, t_high={t.t_high!r}")
    for model_id, cal in bundle.models.items():
        lo, hi = cal.curve.output_range
        _say(f"  {model_id}: {cal.aggregator}, {cal.curve.x.size} points, output [{lo}, {hi}]")
    created = bundle.provenance.get("created")
    if created:
        _say(f"created {created} by {bundle.provenance.get('tool_version', '?')}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from wma_calibrators.synthetic import synthetic_frames, write_frames

    df = synthetic_frames(n_videos=args.videos, seed=args.seed)
    write_frames(df, args.out)
    _say(f"wrote {args.out}: {len(df)} frame scores of {args.videos} videos (seed {args.seed})")
    return 0


def _verdict_table(args: argparse.Namespace) -> int:
    from wma_calibrators.bundle import load_bundle
    from wma_calibrators.verdict_table import format_ranges, grey_levels

    bias: dict[str, float] = {}
    for item in args.bias:
        model_id, sep, value = item.partition("=")
        try:
            bias[model_id] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise CalibrateError(f"--bias expects MODEL_ID=FLOAT, got {item!r}")
    _say(format_ranges(grey_levels(load_bundle(args.bundle), bias)))
    return 0


def _aggregator_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--aggregator",
        action="append",
        default=[],
        metavar="ID=NAME",
        help="aggregator of a model, e.g. 9rfa62j1=topk4 (repeatable)",
    )
    p.add_argument(
        "--aggregator-config",
        metavar="FILE",
        help="YAML/JSON {model_id: aggregator} (flags override it)",
    )


def register(subparsers: Any) -> None:
    """Add ``calibrate`` and its sub-subcommands to the ``wma`` parser."""
    from wma_core import T_HIGH_DEFAULT, T_LOW_DEFAULT

    cal = subparsers.add_parser("calibrate", help="fit, import, inspect calibrator bundles")
    sub = cal.add_subparsers(dest="calibrate_command", metavar="ACTION", required=True)

    p = sub.add_parser("fit", help="fit isotonic calibrators and thresholds from scores")
    p.add_argument("scores", help="CSV or Parquet scores (long or wide layout)")
    p.add_argument("--out", required=True, help="bundle JSON to write")
    _aggregator_flags(p)
    p.add_argument("--folds", type=int, default=5, help="k of the stratified k-fold (5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold split (0)")
    p.add_argument(
        "--uncertain-rate", type=float, default=0.02, help="target share of UNCERTAIN videos (0.02)"
    )
    p.add_argument("--created", help="provenance time (default SOURCE_DATE_EPOCH or now, UTC)")
    p.set_defaults(handler=_guarded(_fit))

    p = sub.add_parser("import-legacy", help="convert a pickled {model_id: IsotonicRegression}")
    p.add_argument("pickle", help="legacy .pkl file")
    p.add_argument("--out", required=True, help="bundle JSON to write")
    p.add_argument(
        "--trust-pickle", action="store_true", help="allow unpickling (runs code from the file)"
    )
    _aggregator_flags(p)
    p.add_argument("--t-low", type=float, default=T_LOW_DEFAULT)
    p.add_argument("--t-high", type=float, default=T_HIGH_DEFAULT)
    p.add_argument("--created", help="provenance time (default SOURCE_DATE_EPOCH or now, UTC)")
    p.set_defaults(handler=_guarded(_import_legacy))

    p = sub.add_parser("report", help="plots and metrics of a bundle")
    p.add_argument("bundle")
    p.add_argument("--scores", help="CSV or Parquet scores to evaluate on")
    p.add_argument("--out", default="calibration-report", help="output directory")
    p.set_defaults(handler=_guarded(_report))

    p = sub.add_parser("verify", help="validate a bundle and print its sha256")
    p.add_argument("bundle")
    p.add_argument("--sha256", help="expected sha256 of the file bytes")
    p.set_defaults(handler=_guarded(_verify))

    p = sub.add_parser("synth", help="write a seeded synthetic training set (long layout)")
    p.add_argument("--out", required=True, help=".csv or .parquet file to write")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--videos", type=int, default=4000)
    p.set_defaults(handler=_guarded(_synth))

    p = sub.add_parser("verdict-table", help="verdict of uniform grey frames with MOCK models")
    p.add_argument("bundle")
    p.add_argument(
        "--bias",
        action="append",
        default=[],
        metavar="ID=FLOAT",
        help="per-model bias of the mock server (repeatable)",
    )
    p.set_defaults(handler=_guarded(_verdict_table))
