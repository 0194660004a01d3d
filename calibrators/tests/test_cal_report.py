"""``wma calibrate report``: PNG plots and the metrics table, with and without scores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from wma_calibrators import CalibratorBundle, load_bundle
from wma_calibrators.fit import fuse_rows
from wma_calibrators.report import fused_histogram_figure, reliability_figure

CliResult = tuple[int, str, str]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MOCK = Path(__file__).resolve().parents[2] / "services" / "local" / "wma_local" / "mock.json"


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_report_with_scores_draws_reliability_histogram_and_prints_metrics(
    small_training_csv: Path, tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    out = tmp_path / "report"
    code, stdout, err = wma(
        "calibrate", "report", MOCK, "--scores", small_training_csv, "--out", out
    )
    assert code == 0, err
    for name in ("calibration_curves.png", "reliability.png", "fused_histogram.png"):
        assert _is_png(out / name), name
    table = (out / "metrics.txt").read_text()
    assert table.strip() in stdout
    for text in ("9rfa62j1", "fused (noisy-OR)", "TPR(certain)", "uncertain", "t_low=0.946837"):
        assert text in table


def test_report_without_scores_plots_the_calibration_curves_only(
    tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    out = tmp_path / "report"
    code, stdout, err = wma("calibrate", "report", MOCK, "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["calibration_curves.png"]
    assert _is_png(out / "calibration_curves.png")
    assert "TPR" not in stdout


@pytest.mark.parametrize("drop", ["dfsesrgu"])
def test_report_on_scores_missing_a_bundle_model_is_refused(
    drop: str, small_training_csv: Path, tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    lines = small_training_csv.read_text().splitlines(keepends=True)
    scores = tmp_path / "partial.csv"
    scores.write_text("".join(line for line in lines if not line.startswith(drop)))
    code, _, err = wma("calibrate", "report", MOCK, "--scores", scores, "--out", tmp_path / "r")
    assert code == 2 and drop in err


def _calibrated_sample() -> tuple[CalibratorBundle, np.ndarray, dict[str, np.ndarray]]:
    """Calibrated probabilities crowded at 0 and 1 (as real ones are), a few in between."""
    bundle = load_bundle(MOCK)
    rng = np.random.default_rng(5)
    labels = (rng.random(600) < 0.5).astype(np.float64)
    base = np.where(labels == 1, 0.999, 0.001)
    cal = {m: np.where(rng.random(600) < 0.2, rng.random(600), base) for m in bundle.models}
    return bundle, labels, cal


def test_reliability_count_labels_stay_inside_the_plot_clear_of_the_tick_labels() -> None:
    bundle, labels, cal = _calibrated_sample()
    fig = reliability_figure(bundle, labels, cal)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() + ax.get_yticklabels()]
        counts = [t for t in ax.texts if t.get_text().isdigit()]
        assert len(counts) >= 3
        for text in counts:
            box = text.get_window_extent(renderer)
            assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), text
            assert not any(box.overlaps(tick) for tick in ticks if tick.width > 0), text


def test_fused_histogram_bins_holding_one_video_stand_visibly_above_the_axis() -> None:
    bundle, labels, cal = _calibrated_sample()
    fig = fused_histogram_figure(bundle, labels, fuse_rows(cal))
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    frame = ax.get_window_extent()
    outlines = [p for p in ax.patches if p.get_label() in ("real videos", "fake videos")]
    assert len(outlines) == 2
    ones, tallest = [], 0.0
    for outline in outlines:
        counts = outline.get_path().vertices[:, 1]
        pixels = outline.get_transform().transform(outline.get_path().vertices)[:, 1]
        ones += [px for count, px in zip(counts, pixels, strict=True) if count == 1]
        tallest = max(tallest, float(pixels.max()))
    # A bin holding a single video is drawn a few pixels above the axis although
    # others hold hundreds, and the tallest pile still fits inside the plot.
    assert ones, "the sample should have bins holding one video"
    assert min(ones) >= frame.y0 + 3
    assert tallest <= frame.y1
