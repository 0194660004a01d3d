"""Realistic JPEG face crops and latency summaries shared by the benchmarks.

The meeting client sends JPEG face crops of a few hundred pixels a side. These
are crops around the face of matplotlib's ``grace_hopper.jpg`` portrait, jittered
in position, size and brightness (seeded), so their sizes and decoding cost are
those of real photos, not of uniform or noise images.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance


def face_crops(count: int, size: int = 224, quality: int = 90, seed: int = 0) -> list[bytes]:
    """``count`` JPEG face crops of ``size`` px at JPEG ``quality`` (~19 KB at 224/90)."""
    from matplotlib import cbook

    path = Path(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    photo = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    rng = np.random.default_rng(seed)
    cx, cy, side = 265, 215, 300  # the face box in the 512x600 portrait
    frames = []
    for _ in range(count):
        s = side * rng.uniform(0.8, 1.2)
        x, y = cx + rng.uniform(-0.08, 0.08) * s, cy + rng.uniform(-0.08, 0.08) * s
        crop = photo.crop((int(x - s / 2), int(y - s / 2), int(x + s / 2), int(y + s / 2)))
        crop = crop.resize((size, size), Image.Resampling.BICUBIC)
        crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.7, 1.3))
        crop = ImageEnhance.Contrast(crop).enhance(rng.uniform(0.8, 1.2))
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=quality)
        frames.append(buf.getvalue())
    return frames


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 95, 99)) -> list[float]:
    """The ``points`` percentiles of ``values`` (numpy's linear interpolation)."""
    return [float(v) for v in np.percentile(np.asarray(values, dtype=np.float64), points)]


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (Linux ``/proc``); NaN if it has gone."""
    return _status_mib(pid, "VmRSS:")


def shmem_mib(pid: int) -> float:
    """The part of :func:`rss_mib` that is shared memory (``RssShmem``: pages of a
    /dev/shm region the process has touched, counted once in every process that did)."""
    return _status_mib(pid, "RssShmem:")


def _status_mib(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, in seconds (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux ``/proc``), depth first."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            out.append(int(child))
            out.extend(child_pids(int(child)))
    return out


def process_name(pid: int) -> str:
    """A short name of a process from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    if "--model-id" in argv:
        return f"model-server {argv[argv.index('--model-id') + 1]}"
    return " ".join(a for a in argv[1:3] if a) or argv[0]
