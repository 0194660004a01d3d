"""The CLI as a user runs it: ``wma demo`` on a temporary stack, ``wma up`` and SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest
from live_processes import WMA, children_of, http_ok, reap, wait_for
from wma_local.stack import free_port

pytestmark = pytest.mark.slow


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


def test_up_serves_the_stack_and_stops_every_child_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*WMA, "up", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"gateway: http://127.0.0.1:{port}"
        ready = f"http://127.0.0.1:{port}/readyz"
        wait_for(lambda: http_ok(ready), "gateway not ready", 60, 0.1)
        children = children_of(proc.pid)
        for model_id in ("9rfa62j1", "1mjgo9w1", "dfsesrgu", "4vtny88m", "legacy"):
            assert any(f"--model-id {model_id} " in c for c in children.values()), children
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        reap(proc)
        stderr = proc.stderr.read() if proc.stderr else ""
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    for pid in children:  # every model server is gone, not orphaned
        assert not os.path.exists(f"/proc/{pid}"), children[pid]
    assert "Traceback" not in stderr
