"""``wma calibrate report``: plots and metrics of a bundle, optionally on scores.

With scores: a reliability diagram per model (binned calibrated probability
against the observed share of fakes), a histogram of fused scores with the
thresholds marked, and the metrics table. Without scores: each model's
calibration curve and the fused score along the diagonal (all models giving
the same aggregated score). Only aggregate statistics are drawn; plots use
matplotlib's object API (no pyplot global state), rendered by Agg.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from wma_core.bundle import CalibratorBundle
from wma_core.bundle_fusion import describe_fusion

from wma_calibrators.errors import ScoresError
from wma_calibrators.fusion_fit import fuse_rows
from wma_calibrators.metrics import metrics_report
from wma_calibrators.scores import VideoScores

FloatArray = npt.NDArray[np.float64]
_EPS = 1e-12
_BINS = 10
_HIST_BINS = 100
_MARGIN = 0.05


def calibrated_scores(bundle: CalibratorBundle, videos: VideoScores) -> dict[str, FloatArray]:
    """Each bundle model's calibrated score of every video."""
    missing = [m for m in bundle.models if m not in videos.scores]
    if missing:
        raise ScoresError(f"scores file has no scores for bundle model(s) {', '.join(missing)}")
    return {m: cal.curve.predict(videos.scores[m]) for m, cal in bundle.models.items()}


def _grid(n: int) -> tuple[Figure, list[Axes]]:
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(5.5 * cols, 4.5 * rows), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def _label_counts(ax: Axes, mean_p: FloatArray, frac: FloatArray, counts: FloatArray) -> None:
    """Each bin's video count beside its point, on the side of the diagonal facing the
    inside of the plot: right of points in the lower half, left of those in the upper."""
    for px, py, n in zip(mean_p, frac, counts, strict=True):
        right = px < 0.5
        ax.annotate(
            str(int(n)),
            (px, py),
            textcoords="offset points",
            xytext=(7 if right else -7, 0),
            ha="left" if right else "right",
            va="center",
            fontsize=7,
        )


def reliability_figure(
    bundle: CalibratorBundle, labels: FloatArray, cal: dict[str, FloatArray]
) -> Figure:
    """Per model: mean calibrated probability of each bin against its share of fakes."""
    fig, axes = _grid(len(cal))
    for ax, (model_id, probs) in zip(axes, cal.items(), strict=True):
        idx = np.minimum((probs * _BINS).astype(np.int64), _BINS - 1)
        used = np.unique(idx)
        mean_p = np.array([probs[idx == b].mean() for b in used])
        frac = np.array([labels[idx == b].mean() for b in used])
        counts = np.array([(idx == b).sum() for b in used], dtype=np.float64)
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
        ax.plot(mean_p, frac, marker="o", label="observed")
        _label_counts(ax, mean_p, frac, counts)
        # Margins keep points (and their labels) at 0 and 1 off the spines and tick labels.
        ax.set(xlim=(-_MARGIN, 1 + _MARGIN), ylim=(-_MARGIN, 1 + _MARGIN))
        ax.set(xlabel="calibrated probability (bin mean)", ylabel="share of fakes")
        ax.set(title=f"{model_id} ({bundle.models[model_id].aggregator})")
        ax.legend(loc="upper left")
    fig.suptitle(f"Reliability per model ({_BINS} equal-width bins, labels = videos per bin)")
    return fig


def _nines(values: FloatArray) -> FloatArray:
    """``-log10(1 - s)``: spreads the crowd of fused scores near 1."""
    return -np.log10(np.clip(1.0 - values, _EPS, 1.0))


def fused_histogram_figure(
    bundle: CalibratorBundle, labels: FloatArray, fused: FloatArray
) -> Figure:
    """Fused scores of real and fake videos; a log count axis keeps the thin tails
    around the thresholds visible next to the tall piles at either end."""
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    top = float(_nines(np.array([fused.max()]))[0]) + 0.5
    bins = np.linspace(0.0, top, _HIST_BINS + 1).tolist()
    t = bundle.thresholds
    low, high = (float(v) for v in _nines(np.array([t.t_low, t.t_high])))
    ax.axvspan(low, high, color="0.85", label="UNCERTAIN band")
    for label, name in ((0, "real videos"), (1, "fake videos")):
        ax.hist(
            _nines(fused[labels == label]), bins=bins, histtype="step", linewidth=1.5, label=name
        )
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8)
    _mark_thresholds(ax, bundle, vertical=True)
    ax.set(
        xlabel="-log10(1 - fused score), capped at 12",
        ylabel="videos (log scale)",
        title=f"Fused {bundle.fusion.label} scores",
    )
    ax.legend(loc="upper center")
    return fig


def _mark_thresholds(ax: Axes, bundle: CalibratorBundle, vertical: bool) -> None:
    t = bundle.thresholds
    for name, value, colour in (("T_low", t.t_low, "green"), ("T_high", t.t_high, "red")):
        label = f"{name} = {value:.6f}"
        pos = float(_nines(np.array([value]))[0])
        if vertical:
            ax.axvline(pos, color=colour, linestyle="--", label=label)
        else:
            ax.axhline(pos, color=colour, linestyle="--", label=label)


def _curves(bundle: CalibratorBundle) -> Figure:
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    grid = np.linspace(0.0, 1.0, 501)
    for model_id, cal in bundle.models.items():
        left.plot(grid, cal.curve.predict(grid), label=f"{model_id} ({cal.aggregator})")
    left.set(xlabel="aggregated score", ylabel="calibrated probability", title="Calibrators")
    left.legend(loc="upper left")
    fused = fuse_rows({m: c.curve.predict(grid) for m, c in bundle.models.items()}, bundle.fusion)
    right.plot(grid, _nines(fused), color="black", label="fused, all models equal")
    _mark_thresholds(right, bundle, vertical=False)
    right.set(xlabel="aggregated score (same for every model)", ylabel="-log10(1 - fused)")
    right.set(title="Fused score along the diagonal")
    right.legend(loc="upper left")
    return fig


def write_report(
    bundle: CalibratorBundle, out_dir: str | Path, videos: VideoScores | None = None
) -> tuple[list[Path], str | None]:
    """Write the PNGs (and metrics.txt with scores); returns their paths and the table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Figure, name: str) -> None:
        fig.savefig(out / name, dpi=100)
        written.append(out / name)

    save(_curves(bundle), "calibration_curves.png")
    if videos is None:
        return written, None
    cal = calibrated_scores(bundle, videos)
    fused = fuse_rows(cal, bundle.fusion)
    labels = videos.labels.astype(np.float64)
    save(reliability_figure(bundle, labels, cal), "reliability.png")
    save(fused_histogram_figure(bundle, labels, fused), "fused_histogram.png")
    table = metrics_report(
        videos.labels,
        fused,
        {m: videos.scores[m] for m in bundle.models},
        bundle.thresholds,
        videos.methods,
        fusion_label=bundle.fusion.label,
    )
    table = describe_fusion(bundle.fusion) + "\n\n" + table
    (out / "metrics.txt").write_text(table + "\n", encoding="utf-8")
    written.append(out / "metrics.txt")
    return written, table
