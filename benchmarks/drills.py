"""Fault drills under load against a real local stack: kill, hang, all down, gateway SIGTERM.

Starts the four mock model servers and the gateway, each its own process on
loopback, and runs :func:`wma_local.drills.run_drills`: while a few clients send
good calls, one member is SIGKILLed and restarted, one is hung (SIGSTOP) past its
timeout and resumed, every member is killed and restarted, and the gateway gets a
SIGTERM. Prints, per drill, the answers (complete, degraded, 503, refused, lost),
anything unexpected (a wrong or interval-rule-breaking verdict, a lost request)
and the time from a member being ready to complete answers. Exits 1 on anything
unexpected, or when answers were not complete again within the goal (2 s)
(docs/reliability.md).

    .venv/bin/python benchmarks/drills.py [--drills kill,hang,all-down,gateway-sigterm]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

from wma_local.drills import DRILLS, RECOVERY_GOAL_S, run_drills
from wma_local.livestack import LiveStack


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--drills", default=",".join(DRILLS), help=f"comma-separated, of {', '.join(DRILLS)}"
    )
    parser.add_argument("--clients", type=int, default=3, help="steady-load clients (3)")
    parser.add_argument(
        "--sigterm-clients", type=int, default=8, help="clients during the gateway SIGTERM (8)"
    )
    parser.add_argument(
        "--member-timeout",
        type=float,
        help="each member's timeout in the gateway config (default: the gateway's, 4 s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = tuple(n for n in args.drills.split(",") if n)
    unknown = sorted(set(names) - set(DRILLS))
    if unknown:
        build_parser().error(f"unknown drill(s) {', '.join(unknown)}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        flush=True,
    )
    failed = False
    with LiveStack(member_timeout_s=args.member_timeout) as stack:
        reports = run_drills(
            stack, names, clients=args.clients, sigterm_clients=args.sigterm_clients
        )
        for report in reports:
            print("\n".join(report.lines()), flush=True)
            recovery = report.recovery_s()
            slow = "ready" in report.events and (recovery is None or recovery > RECOVERY_GOAL_S)
            failed = failed or bool(report.problems) or slow
        if failed:
            stack.keep_logs = True
            print(f"logs and the gateway config kept in {stack.workdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
