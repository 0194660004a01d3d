"""Where every ``wma calibrate`` command meets the terminal.

:func:`guarded` wraps each command handler and owns the exit-code contract:
0 on success; 2 with one line ``error: ...`` on stderr for anything the user
can cause (bad arguments or input, an invalid bundle, an unreadable or
unwritable file); and a quiet exit 141 (like a process killed by SIGPIPE) when
whoever reads stdout goes away, as in ``wma calibrate verify b.json | head -1``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from wma_calibrators.bundle import BundleError
from wma_calibrators.errors import CalibrateError
from wma_calibrators.provenance import source_date_epoch

Handler = Callable[[argparse.Namespace], int]

EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 128 + 13  # the shell's status for a process killed by SIGPIPE


def say(text: str, *, err: bool = False) -> None:
    """Command output: results to stdout, diagnostics to stderr."""
    (sys.stderr if err else sys.stdout).write(text + "\n")


def progress() -> bool:
    """Progress bars only for a person watching a terminal."""
    return sys.stderr.isatty()


def _os_message(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a file descriptor (e.g. captured in-process)


def guarded(handler: Handler) -> Handler:
    """``handler`` with the exit-code contract above."""

    def run(args: argparse.Namespace) -> int:
        try:
            source_date_epoch()  # malformed values break numpy's imports; refuse them first
            code = handler(args)
            # Flush here, so a closed pipe surfaces now rather than at interpreter exit.
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        except BundleError as exc:
            say(f"error: invalid bundle: {exc}", err=True)
        except CalibrateError as exc:
            say(f"error: {exc}", err=True)
        except OSError as exc:
            say(f"error: {_os_message(exc)}", err=True)
        return EXIT_USER_ERROR

    return run
