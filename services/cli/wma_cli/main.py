"""Entry point of the ``wma`` console script.

Each package owns its subcommands in its own ``cli`` module, which exposes
``register(subparsers)``; this module only wires them together, so no package
is imported before its command runs and nothing happens at import time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Modules whose ``register(subparsers)`` adds one or more subcommands; a package
# that is not installed is left out.
_REGISTRARS: tuple[str, ...] = (
    "wma_calibrators.cli",
    "wma_model_server.cli",
    "wma_fusion.cli",
    "wma_local.cli",
    "wma_calibrators.rollout.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wma",
        description="wma-ensemble: four-model deepfake-detection ensemble.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _REGISTRARS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        code = handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``wma ... | head``): not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush stays quiet.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass  # stdout is not a file descriptor (e.g. captured in-process)
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
