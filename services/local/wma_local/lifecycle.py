"""How the local stack's processes end: signals in the parent, the parent's death in a child.

Two halves, both used by :class:`wma_local.stack.LocalStack` and the ``wma up`` /
``wma analyze`` / ``wma demo`` commands:

* :func:`raise_on_signals` turns SIGTERM and SIGHUP into :class:`Terminated`
  (SIGINT stays :class:`KeyboardInterrupt`), so ``with LocalStack(...)`` unwinds and
  stops every child whichever way the command is ended (``kill``, ``timeout N``,
  closing the terminal, Ctrl+C). Later signals are ignored, so a second one
  cannot cut the clean-up short; :func:`signals_deferred` holds one back while a
  child is being started, so no child escapes being recorded.
* A child started by the stack runs ``python -m wma_local.lifecycle ARGS`` (that is
  ``wma ARGS`` under a guard) with ``WMA_PARENT_PID`` set. A daemon thread polls
  ``os.getppid()``; once the parent is gone (SIGKILL included: nothing runs in a
  killed parent) the child sends itself SIGTERM, so uvicorn shuts down cleanly,
  and exits hard if that has not happened within a grace period. This is plain
  POSIX; Linux's ``prctl(PR_SET_PDEATHSIG)`` is not used because it fires when the
  parent *thread* that forked the child ends, which would kill a stack started
  from a worker thread. When ``WMA_STACK_TMPDIR`` names the stack's temporary
  directory, a child orphaned this way removes it as it exits (the first one to
  get there wins; the others' open log files are unaffected).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

PARENT_PID_ENV = "WMA_PARENT_PID"
STACK_DIR_ENV = "WMA_STACK_TMPDIR"
POLL_S = 0.5
GRACE_S = 15.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """The process got SIGTERM or SIGHUP; unwinding stops the local stack."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(exc: BaseException) -> int:
    """The shell's convention for a command ended by a signal: 128 + its number."""
    signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
    return 128 + int(signum)


class _SignalState:
    """What :func:`raise_on_signals` shares with :func:`signals_deferred` (main thread)."""

    active = False
    fired = False
    deferring = 0
    pending: int | None = None


_state = _SignalState()


def _interrupt(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
    """While active (main thread only), the first SIGTERM/SIGHUP raises :class:`Terminated`
    (SIGINT :class:`KeyboardInterrupt`); later ones are ignored, so clean-up runs whole."""
    if threading.current_thread() is not threading.main_thread() or _state.active:
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if _state.fired:
            return
        if _state.deferring:
            _state.pending = signum
            return
        _state.fired = True
        raise _interrupt(signum)

    _state.active, _state.fired, _state.pending = True, False, None
    signals = (*STOP_SIGNALS, signal.SIGINT)
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _state.active = False


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold a stop signal until the block ends: e.g. around starting a child, so a
    child is never started without being recorded for clean-up."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
        signum, _state.pending = _state.pending, None
        if signum is not None and not _state.deferring and not _state.fired:
            _state.fired = True
            raise _interrupt(signum)


def watch_parent(
    parent_pid: int, poll_s: float = POLL_S, grace_s: float = GRACE_S
) -> threading.Event:
    """Stop this process when ``parent_pid`` is no longer its parent (a daemon thread);
    the event returned is set once that happened."""
    orphaned = threading.Event()

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        orphaned.set()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="wma-parent-watch", daemon=True).start()
    return orphaned


def guarded_main(argv: list[str]) -> int:
    """``wma ARGV``, stopped when the process named by ``$WMA_PARENT_PID`` dies."""
    parent = os.environ.get(PARENT_PID_ENV, "")
    orphaned = watch_parent(int(parent)) if parent.isdigit() else threading.Event()
    from wma_cli.main import main

    # uvicorn re-raises the SIGTERM it drained on: as Terminated, so `finally` runs.
    try:
        with raise_on_signals():
            code: int = main(argv)
    except Terminated as exc:
        code = exit_code(exc)
    finally:
        stack_dir = os.environ.get(STACK_DIR_ENV)
        if orphaned.is_set() and stack_dir:  # nobody else is left to remove it
            shutil.rmtree(stack_dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(guarded_main(sys.argv[1:]))
