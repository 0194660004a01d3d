"""Where every ``wma calibrate`` command meets the terminal.

:func:`guarded` wraps each command handler and owns the exit-code contract:
0 on success; 2 with one line ``error: ...`` on stderr for anything the user
can cause (bad arguments or input, an invalid bundle, an unreadable or
unwritable file); a closed stdout (``wma calibrate verify b.json | head -1``) is left to
:func:`wma_cli.main.main`, which ends every command quietly with 141.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from wma_core.bundle import BundleError

from wma_calibrators.errors import CalibrateError
from wma_calibrators.provenance import source_date_epoch

Handler = Callable[[argparse.Namespace], int]

EXIT_USER_ERROR = 2


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


def guarded(handler: Handler) -> Handler:
    """``handler`` with the exit-code contract above."""

    def run(args: argparse.Namespace) -> int:
        try:
            source_date_epoch()  # malformed values break numpy's imports; refuse them first
            return handler(args)
        except BrokenPipeError:
            raise  # an OSError, but not the user's: wma_cli.main ends quietly with 141
        except BundleError as exc:
            say(f"error: invalid bundle: {exc}", err=True)
        except CalibrateError as exc:
            say(f"error: {exc}", err=True)
        except OSError as exc:
            say(f"error: {_os_message(exc)}", err=True)
        return EXIT_USER_ERROR

    return run
