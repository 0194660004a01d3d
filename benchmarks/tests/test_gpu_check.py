"""The GPU check's whole path runs in its CPU dry-run mode: checkpoint, loader, server, table."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_gpu_check_dry_run_ends_with_its_table() -> None:
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| precision |"))
    rows = [line.split("|")[1].strip() for line in lines[header + 2 : header + 4]]
    assert rows == ["float32", "bfloat16"]
    fp32 = [cell.strip() for cell in lines[header + 2].split("|")]
    assert float(fp32[2]) > 0 and float(fp32[5]) > 0  # forward ms and end-to-end p50 measured
    assert fp32[-2].startswith("0/")  # fp32 against itself flips nothing
    assert "OpenCV on the CPU" in done.stdout
