"""Soak: N calls at 8 concurrent clients against a real local stack, ~5 % of them malformed.

Starts the four mock model servers and the gateway, each its own process on
loopback (:class:`wma_local.livestack.LiveStack`), sends the calls of
:func:`wma_local.soak.run_soak` and prints the outcome: unexpected answers (a good
call must get 200 with the core's verdict, a bad one its 4xx JSON error), latency
p50/p99 of the good calls and each process's resident memory. Exits 1 on any
unexpected answer (docs/reliability.md).

    .venv/bin/python benchmarks/soak.py [--calls 2000] [--clients 8] [--bad-fraction 0.05]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

from wma_local.livestack import LiveStack
from wma_local.soak import run_soak


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls in all (default 2000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument(
        "--bad-fraction", type=float, default=0.05, help="share of malformed calls (0.05)"
    )
    parser.add_argument("--seed", type=int, default=11, help="seed of the call plan (11)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        flush=True,
    )
    with LiveStack() as stack:
        report = run_soak(stack, args.calls, args.clients, args.bad_fraction, args.seed)
        print("\n".join(report.lines()))
        if report.problems:
            stack.keep_logs = True
            print(f"logs and the gateway config kept in {stack.workdir}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
