"""``simulate --out DIR``: the replay's metrics against frames per request and window.

Two PNGs, each with TPR and FPR among certain requests and the UNCERTAIN share
over all videos: ``by_frames_per_request.png`` (no window, N from 1 to 32)
and ``by_window.png`` (the chosen N, window sizes from N up to 48, the old
participant logic's longest window). Only aggregate statistics are drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

FRAMES_PER_REQUEST_SWEEP = (1, 2, 5, 10, 16, 20, 27, 32)
WINDOW_SWEEP = (10, 16, 20, 27, 32, 48)
_SERIES = (("tpr_certain", "TPR (certain)"), ("fpr_certain", "FPR (certain)"))


def _figure(xs: Sequence[int], points: Sequence[dict[str, Any]], xlabel: str, title: str) -> Figure:
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for key, label in _SERIES:
        ys = [p[key] if p[key] is not None else float("nan") for p in points]
        left.plot(xs, ys, marker="o", label=label)
    left.set(xlabel=xlabel, ylabel="share of certain requests", title="TPR and FPR")
    left.legend(loc="center right")
    ys = [p["uncertain"] if p["uncertain"] is not None else float("nan") for p in points]
    right.plot(xs, ys, marker="o", color="grey")
    right.set(xlabel=xlabel, ylabel="share of requests", title="UNCERTAIN")
    fig.suptitle(title)
    return fig


def write_plots(
    out_dir: str | Path,
    metrics_at: Callable[[int, int | None], dict[str, Any]],
    frames_per_request: int,
    longest_video: int,
) -> list[Path]:
    """Sweep with ``metrics_at(frames_per_request, window)`` (the "all" metrics) and draw."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    ns = [n for n in FRAMES_PER_REQUEST_SWEEP if n <= longest_video] or [frames_per_request]
    fig = _figure(
        ns, [metrics_at(n, None) for n in ns], "frames per request", "Requests without a window"
    )
    fig.savefig(out / "by_frames_per_request.png", dpi=100)
    written.append(out / "by_frames_per_request.png")
    ws = sorted({frames_per_request, *(w for w in WINDOW_SWEEP if w >= frames_per_request)})
    fig = _figure(
        ws,
        [metrics_at(frames_per_request, w) for w in ws],
        "window (frames)",
        f"{frames_per_request} frames per request, decision on the last W frames",
    )
    fig.savefig(out / "by_window.png", dpi=100)
    written.append(out / "by_window.png")
    return written
