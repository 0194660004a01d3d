"""``wma calibrate report``: PNG plots and the metrics table, with and without scores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

CliResult = tuple[int, str, str]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MOCK = Path(__file__).resolve().parents[1] / "mock.json"


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
