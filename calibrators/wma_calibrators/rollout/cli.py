"""``wma rollout report``: the rollout report over recorded comparison data.

Hooked into ``wma`` by ``wma_cli.main`` calling :func:`register`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wma_fusion.rollout.config import RecordSink

from wma_calibrators.rollout.gates import UNCERTAIN_BAND

if TYPE_CHECKING:
    from wma_calibrators.rollout.report import Labels


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    key_env = RecordSink.model_fields["hash_key_env"].default
    band = " ".join(f"{x:g}" for x in UNCERTAIN_BAND)
    rollout = subparsers.add_parser(
        "rollout",
        help="rollout tools (comparison report)",
        description="Tools for the legacy -> ensemble rollout.",
    )
    sub = rollout.add_subparsers(dest="rollout_command", metavar="SUBCOMMAND", required=True)
    report = sub.add_parser(
        "report",
        help="agreement, latency, errors and gates from comparison records",
        description="Read the gateway's comparison records (JSON lines, from its log or "
        "records file; other lines are skipped) and write report.json, latency.png and "
        "confusion.png: verdict agreement, banner confusion, latency and errors per path, "
        "and the rollout gates.",
    )
    report.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="record files (one or more)"
    )
    report.add_argument(
        "--labels",
        type=Path,
        help="CSV with a 'label' (real|fake) column and one key column: participant_id_hash, "
        "participant_id, meeting_id_hash or meeting_id (default: none; no TPR/FPR)",
    )
    report.add_argument(
        "--out",
        type=Path,
        default=Path("rollout-report"),
        help="output folder (default rollout-report)",
    )
    report.add_argument(
        "--hash-key-env",
        default=key_env,
        help="env var holding the records' hash key, to match labels keyed by raw ids "
        f"(default {key_env})",
    )
    report.add_argument(
        "--slo-ms", type=float, default=5000.0, help="latency SLO in ms (default 5000)"
    )
    report.add_argument(
        "--uncertain-band",
        type=float,
        nargs=2,
        default=list(UNCERTAIN_BAND),
        metavar=("LO", "HI"),
        help=f"accepted ensemble uncertain rate, as fractions (default {band})",
    )
    report.add_argument(
        "--strict", action="store_true", help="exit 1 when a gate fails (default: exit 0)"
    )
    report.set_defaults(handler=run_report)


def _labels(args: argparse.Namespace, records: list[dict[str, Any]]) -> Labels | None:
    from wma_fusion.rollout.records import IdHasher

    from wma_calibrators.rollout.report import ReportError, load_labels

    if args.labels is None:
        return None
    raw_ids = any("participant_id" in r for r in records)
    hasher: IdHasher | None = None
    if not raw_ids:
        key = os.environ.get(args.hash_key_env, "")
        if key:
            hasher = IdHasher(key.encode())
            ids = {r.get("hash_key_id") for r in records} - {None}
            if ids and hasher.key_id not in ids:
                sys.stderr.write(
                    f"warning: the key in {args.hash_key_env} is not the key the records were "
                    "hashed with; raw-id labels will match nothing\n"
                )
    labels = load_labels(args.labels, hasher)
    if not raw_ids and hasher is None and not labels.key.endswith("_hash"):
        raise ReportError(
            f"{args.labels} is keyed by raw ids but the records hold keyed hashes: set "
            f"{args.hash_key_env} to the gateway's hash key (or pass --hash-key-env NAME)"
        )
    return labels


def _check_args(args: argparse.Namespace) -> None:
    """Refuse bad options before any work, as one ``error:`` line (exit 2)."""
    from wma_calibrators.rollout.report import ReportError

    if not (math.isfinite(args.slo_ms) and args.slo_ms > 0):
        raise ReportError(f"--slo-ms must be a positive number of milliseconds, got {args.slo_ms}")
    lo, hi = args.uncertain_band
    if not (0.0 <= lo <= hi <= 1.0):
        raise ReportError(
            f"--uncertain-band LO HI must be fractions with 0 <= LO <= HI <= 1, got {lo} {hi}"
        )
    if args.out.exists() and not args.out.is_dir():
        raise ReportError(f"--out {args.out} is a file, not a directory")


def run_report(args: argparse.Namespace) -> int:
    # Imported here so that ``wma --help`` does not load numpy and matplotlib.
    from wma_calibrators.rollout.gates import GateStatus, judge_gates
    from wma_calibrators.rollout.report import ReportError, compute_report, load_records
    from wma_calibrators.rollout.report_render import (
        plot_confusion,
        plot_latency,
        render_text,
        write_summary,
    )

    try:
        _check_args(args)
        parsed = load_records(args.files)
        if parsed.invalid_records:
            sys.stderr.write(
                f"warning: skipped {parsed.invalid_records} comparison record(s) with an unknown "
                "banner, a non-numeric latency or a non-string status\n"
            )
        records = parsed.records
        if not records:
            raise ReportError("no comparison records found in the given files")
        labels = _labels(args, records)
    except ReportError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    report = compute_report(
        records,
        labels,
        slo_ms=args.slo_ms,
        skipped_lines=parsed.skipped_lines,
        invalid_records=parsed.invalid_records,
    )
    gates = judge_gates(report, uncertain_band=tuple(args.uncertain_band))
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        written = [
            write_summary(report, gates, args.out / "report.json"),
            plot_latency(records, args.slo_ms, args.out / "latency.png"),
            plot_confusion(report, args.out / "confusion.png"),
        ]
    except OSError as exc:
        where = exc.filename if exc.filename is not None else args.out
        sys.stderr.write(f"error: cannot write the report to {where}: {exc.strerror or exc}\n")
        return 2
    sys.stdout.write(render_text(report, gates) + "\n")
    sys.stdout.write("wrote: " + ", ".join(str(p) for p in written) + "\n")
    if labels is not None and report.paths["ensemble"].labelled == 0:
        sys.stderr.write("warning: no record matched a label (check the key column and hash key)\n")
    failed = any(g.status is GateStatus.FAILS for g in gates)
    return 1 if args.strict and failed else 0
