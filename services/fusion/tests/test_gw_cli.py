"""The CLI as a user runs it: ``wma demo`` on a temporary stack, ``wma up`` and SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from wma_fusion.stack import free_port

pytestmark = pytest.mark.slow
WMA = [sys.executable, "-m", "wma_cli.main"]


def test_demo_prints_each_participants_verdict_and_banner() -> None:
    done = subprocess.run([*WMA, "demo"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(
            r"^(\S+-\S+)\s+(REAL|UNCERTAIN|FAKE|NO_FACE)\s+(\w+)$", done.stdout, re.M
        )
    }
    assert rows == {
        "alice-real": ("REAL", "GREEN"),
        "bob-uncertain": ("UNCERTAIN", "YELLOW"),
        "carol-fake": ("FAKE", "RED"),
        "dave-no-face": ("NO_FACE", "NONE"),
    }
    assert "Traceback" not in done.stderr


def _children_of(pid: int) -> dict[int, str]:
    cmdlines = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdlines[int(entry)] = f.read().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return cmdlines


def test_up_serves_the_stack_and_stops_every_child_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*WMA, "up", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"gateway: http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway not ready"
            time.sleep(0.1)
        children = _children_of(proc.pid)
        for model_id in ("9rfa62j1", "1mjgo9w1", "dfsesrgu", "4vtny88m", "legacy"):
            assert any(f"--model-id {model_id} " in c for c in children.values()), children
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr = proc.stderr.read() if proc.stderr else ""
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    for pid in children:  # every model server is gone, not orphaned
        assert not os.path.exists(f"/proc/{pid}"), children[pid]
    assert "Traceback" not in stderr
