"""No command leaks its local stack: signals, a killed parent, a dead child, a busy port.

Real ``wma`` processes, as a user runs them; each test checks the processes and the
temporary directory the stack leaves behind (nothing, unless logs are worth keeping).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from live_processes import WMA, children_of, http_ok, reap, wait_for
from wma_local.demo import FRAMES_DIR
from wma_local.stack import free_port

pytestmark = pytest.mark.slow
STACK_SIZE = 5  # four members and the legacy server


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


def stack_dir(children: dict[int, str]) -> Path:
    """The stack's directory: where its children write their logs."""
    return Path(os.readlink(f"/proc/{next(iter(children))}/fd/1")).parent


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_analyze_without_a_gateway_stops_its_stack_when_signalled(signum: int) -> None:
    cmd = [*WMA, "analyze", "--image-dir", str(FRAMES_DIR / "alice-real")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(children_of(proc.pid)) == STACK_SIZE, "stack not started")
        children = children_of(proc.pid)
        workdir = stack_dir(children)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signum, err
    assert "wma analyze: error: interrupted; the local stack was stopped" in err
    assert "Traceback" not in err
    assert not [pid for pid in children if alive(pid)], children
    assert not workdir.exists()


def start_up(tmp_path: Path, port: int) -> tuple[subprocess.Popen[str], Path, Path]:
    """``wma up`` with stderr in a file; returns it, its stack dir and the stderr file."""
    err_path = tmp_path / "up.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [*WMA, "up", "--port", str(port)], stdout=subprocess.PIPE, stderr=err, text=True
        )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == f"gateway: http://127.0.0.1:{port}"
    logs = proc.stdout.readline()
    assert logs.startswith("logs and gateway config: "), logs
    return proc, Path(logs.split(": ", 1)[1].strip()), err_path


def ready(port: int) -> bool:
    return http_ok(f"http://127.0.0.1:{port}/readyz")


def test_up_reports_a_dead_model_server_and_stops_on_sighup_keeping_the_logs(
    tmp_path: Path,
) -> None:
    port = free_port()
    proc, workdir, err_path = start_up(tmp_path, port)
    try:
        wait_for(lambda: ready(port), "gateway not ready")
        children = children_of(proc.pid)
        (victim,) = [pid for pid, cmd in children.items() if "--model-id dfsesrgu " in cmd]
        os.kill(victim, signal.SIGKILL)
        # the WARNING, not the INFO line naming each server at start
        death = f"model server dfsesrgu (pid {victim}) exited"
        wait_for(lambda: death in err_path.read_text(), "death not reported")
        assert ready(port)  # the gateway keeps serving without it
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(60) == 1
    finally:
        reap(proc)
        if proc.stdout:
            proc.stdout.close()
    err = err_path.read_text()
    try:
        assert "WARNING" in err and "exited with code -9" in err
        assert f"logs are kept in {workdir}" in err
        assert (workdir / "model-dfsesrgu.log").is_file()
        assert not [pid for pid in children if alive(pid)], children
        assert "Traceback" not in err and "INFO httpx" not in err
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_up_children_end_and_remove_the_stack_dir_when_up_itself_is_killed(tmp_path: Path) -> None:
    proc, workdir, _ = start_up(tmp_path, free_port())
    try:
        wait_for(lambda: len(children_of(proc.pid)) == STACK_SIZE, "stack not started")
        children = children_of(proc.pid)
        proc.kill()  # SIGKILL: nothing runs in the parent, the children must notice
        proc.wait()
        wait_for(lambda: not [p for p in children if alive(p)], "children outlived up", 60)
        wait_for(lambda: not workdir.exists(), "the orphans left the stack directory", 10)
    finally:
        reap(proc)
        if proc.stdout:
            proc.stdout.close()
        shutil.rmtree(workdir, ignore_errors=True)


def test_up_on_a_busy_port_exits_2_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*WMA, "up", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2
    assert f"wma up: error: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "model server" not in done.stderr and done.stdout == ""


def test_up_stopped_by_sigterm_logs_no_warning(tmp_path: Path) -> None:
    # A normal stop: the children exit with 143 while the stack stops them; that is
    # not a model server dying under a running gateway, so no WARNING.
    port = free_port()
    proc, workdir, err_path = start_up(tmp_path, port)
    try:
        wait_for(lambda: ready(port), "gateway not ready")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        reap(proc)
        if proc.stdout:
            proc.stdout.close()
        shutil.rmtree(workdir, ignore_errors=True)
    err = err_path.read_text()
    assert "WARNING" not in err and "exited with code" not in err, err
    assert "Traceback" not in err
    assert code == 0, err
