"""``wma calibrate ...``: argument parsers of fit, import-legacy, report, verify, synth,
verdict-table (and simulate, :mod:`wma_calibrators.cli_simulate`).

Handlers live in :mod:`wma_calibrators.commands` and are wrapped by
:func:`wma_calibrators.console.guarded`, which owns the exit codes (0 success,
2 and one ``error: ...`` line for user errors, a quiet 141 on a closed pipe).
Every option's help shows its default.
"""

from __future__ import annotations

import argparse
from typing import Any

from wma_calibrators import commands
from wma_calibrators.console import guarded

_CREATED_HELP = "provenance time stamp (default: $SOURCE_DATE_EPOCH, else now; UTC)"


def _aggregator_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--aggregator",
        action="append",
        default=[],
        metavar="ID=NAME",
        help="aggregator of a model, e.g. 9rfa62j1=topk4; repeatable (default: the product's "
        "defaults for the four checkpoints)",
    )
    p.add_argument(
        "--aggregator-config",
        metavar="FILE",
        help="YAML/JSON {model_id: aggregator}; --aggregator flags override it (default: none)",
    )


def _command(sub: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=f"{summary[0].upper()}{summary[1:]}. {description}"
    )
    return parser


def frames_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--frames",
        action="append",
        default=[],
        metavar="ID=PATH",
        help="the training pipeline's frame scores of one model (columns method, label, "
        "frame_path, frame_prob; .csv, .csv.gz or .parquet), instead of SCORES; repeat "
        "once per model (default: none)",
    )


def _bundle_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE", help="calibrator bundle JSON (wma-calibrators/v1)")


def register(subparsers: Any) -> None:
    """Add ``calibrate`` and its sub-subcommands to the ``wma`` parser."""
    from wma_core import T_HIGH_DEFAULT, T_LOW_DEFAULT

    cal = subparsers.add_parser(
        "calibrate",
        help="fit, import, inspect calibrator bundles",
        description="Make, inspect and check calibrator bundles. Errors are one line "
        "'error: ...' on stderr with exit status 2.",
    )
    sub = cal.add_subparsers(dest="calibrate_command", metavar="ACTION", required=True)

    p = _command(
        sub,
        "fit",
        "fit isotonic calibrators and thresholds from scores",
        "Aggregates each video's frame scores per model, fits one isotonic calibrator per "
        "model and places the UNCERTAIN band on out-of-fold fused scores (--fusion), then "
        "prints the metrics table and the three fusions side by side.",
    )
    p.add_argument(
        "scores",
        metavar="SCORES",
        nargs="?",
        help="CSV or Parquet scores (long or wide layout); or give --frames",
    )
    frames_flag(p)
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle JSON to write")
    p.add_argument(
        "--fusion",
        choices=("noisy_or", "sum_logits", "stacked"),
        default="noisy_or",
        help="fusion rule in the bundle; the report compares all three (default: %(default)s)",
    )
    _aggregator_flags(p)
    p.add_argument(
        "--folds", type=int, default=5, help="k of the stratified k-fold (default: %(default)s)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the fold split (default: %(default)s)"
    )
    p.add_argument(
        "--uncertain-rate",
        type=float,
        default=0.02,
        help="target share of UNCERTAIN videos, in (0, 1) (default: %(default)s)",
    )
    p.add_argument("--created", help=_CREATED_HELP)
    p.set_defaults(handler=guarded(commands.fit))

    p = _command(
        sub,
        "import-legacy",
        "convert a pickled {model_id: IsotonicRegression}",
        "Unpickling runs code from the file, so it is refused without --trust-pickle. The "
        "bundle's calibrators predict exactly as the pickled ones.",
    )
    p.add_argument("pickle", metavar="FILE.pkl", help="legacy pickle file")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle JSON to write")
    p.add_argument(
        "--trust-pickle", action="store_true", help="allow unpickling (runs code from the file)"
    )
    _aggregator_flags(p)
    p.add_argument(
        "--t-low",
        type=float,
        default=T_LOW_DEFAULT,
        help="fused score below which a video is REAL (default: %(default)s)",
    )
    p.add_argument(
        "--t-high",
        type=float,
        default=T_HIGH_DEFAULT,
        help="fused score above which a video is FAKE (default: %(default)s)",
    )
    p.add_argument("--created", help=_CREATED_HELP)
    p.set_defaults(handler=guarded(commands.import_legacy))

    p = _command(
        sub,
        "report",
        "plots and metrics of a bundle",
        "Always draws calibration_curves.png; with --scores (held-out data) also "
        "reliability.png, fused_histogram.png and metrics.txt.",
    )
    _bundle_arg(p)
    p.add_argument("--scores", help="CSV or Parquet scores to evaluate on (default: none)")
    frames_flag(p)
    p.add_argument(
        "--out", default="calibration-report", help="output directory (default: %(default)s)"
    )
    p.set_defaults(handler=guarded(commands.report))

    p = _command(
        sub,
        "verify",
        "validate a bundle and print its sha256",
        "Prints the sha256 of the file bytes and a summary; exit 2 naming the field when "
        "the bundle is invalid or the sha256 does not match --sha256.",
    )
    _bundle_arg(p)
    p.add_argument(
        "--sha256", metavar="HEX", help="expected sha256 of the file bytes (default: no pin)"
    )
    p.set_defaults(handler=guarded(commands.verify))

    p = _command(
        sub,
        "synth",
        "write a seeded synthetic training set (long layout)",
        "For tests, demos and services/local/wma_local/mock.json only.",
    )
    p.add_argument(
        "--out", required=True, metavar="FILE", help="file to write, ending in .csv or .parquet"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=7,
        help=f"random seed, 0..{commands.SEED_MAX} (default: %(default)s)",
    )
    p.add_argument(
        "--videos",
        type=int,
        default=4000,
        help=f"number of videos, 2..{commands.SYNTH_MAX_VIDEOS} (default: %(default)s)",
    )
    p.set_defaults(handler=guarded(commands.synth))

    p = _command(
        sub,
        "verdict-table",
        "verdict of uniform grey frames with MOCK models",
        "The mock model server scores a frame as mean(RGB)/255 + bias; prints which grey "
        "levels 0..255 give REAL, UNCERTAIN and FAKE with this bundle.",
    )
    _bundle_arg(p)
    p.add_argument(
        "--bias",
        action="append",
        default=[],
        metavar="ID=FLOAT",
        help="per-model bias of the mock server; repeatable (default: 0 for every model)",
    )
    p.set_defaults(handler=guarded(commands.verdict_table))

    from wma_calibrators.cli_simulate import register_simulate

    register_simulate(sub, _command, _bundle_arg)
