"""The training pipeline's frame-score files (``--frames ID=PATH``) and ``simulate``.

The same synthetic frames are written twice: once per model in the training
layout (``method, label, frame_path, frame_prob``, rows shuffled, frame order
only in the file names) and once in the long layout. Fitting on either gives
the same bundle, whose calibrators are scikit-learn's isotonic regressions on
the aggregated scores; ``simulate`` matches a replay written here from scratch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from wma_calibrators.synthetic import synthetic_frames
from wma_core import aggregate

CliResult = tuple[int, str, str]
MOCK = Path(__file__).resolve().parents[2] / "services" / "local" / "wma_local" / "mock.json"
IDS = ("9rfa62j1", "1mjgo9w1", "dfsesrgu", "4vtny88m")
AGGS = {"9rfa62j1": "topk4", "1mjgo9w1": "softmax_b5", "dfsesrgu": "topk4", "4vtny88m": "topk4"}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path, pd.DataFrame]:
    """(``--frames`` arguments, the long-layout CSV, the frames with their order)."""
    d = tmp_path_factory.mktemp("frames")
    df = synthetic_frames(n_videos=400, seed=5, frames=(12, 40))
    df["frame"] = df.groupby(["model_id", "video_id"]).cumcount() * 3 + 7  # gaps, not 0-based
    df["video_id"] = "/data/" + df["method"] + "/" + df["video_id"]
    df["frame_path"] = df["video_id"] + "/" + df["frame"].map("{:05d}.png".format)
    args = []
    for i, model_id in enumerate(IDS):
        rows = df[df["model_id"] == model_id][["method", "label", "frame_path", "frame_prob"]]
        rows = rows.sample(frac=1.0, random_state=i)  # any order
        name = ("m.csv", "m.csv.gz", "m.parquet", "m.csv")[i]
        path = d / f"{model_id}-{name}"
        if name.endswith(".parquet"):
            rows.to_parquet(path, index=False)
        else:
            rows.to_csv(path, index=False)
        args += ["--frames", f"{model_id}={path}"]
    long_path = d / "long.csv"
    df[["model_id", "video_id", "label", "method", "frame_prob"]].to_csv(long_path, index=False)
    return args, long_path, df


def fit(wma: Callable[..., CliResult], out: Path, *args: str | Path) -> dict[str, object]:
    code, stdout, err = wma(
        "calibrate", "fit", *args, "--out", out, "--created", "2024-01-01T00:00:00Z"
    )
    assert code == 0, err
    doc: dict[str, object] = json.loads(out.read_text())
    return doc


def test_fit_on_training_files_gives_sklearns_isotonic_on_every_videos_aggregated_score(
    layouts: tuple[list[str], Path, pd.DataFrame], tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    frames, _, df = layouts
    doc = fit(wma, tmp_path / "b.json", *frames)
    grid = np.linspace(-0.1, 1.1, 2001)
    models = doc["models"]
    assert isinstance(models, dict) and set(models) == set(IDS)
    for model_id in IDS:
        rows = df[df["model_id"] == model_id].sort_values(["video_id", "frame"])
        per_video = rows.groupby("video_id", sort=True)
        x = np.array([aggregate(AGGS[model_id], g["frame_prob"].to_numpy()) for _, g in per_video])
        y = per_video["label"].first().to_numpy(dtype=np.float64)
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(x, y)
        curve = models[model_id]["isotonic"]
        ours = np.interp(grid, curve["x"], curve["y"])
        np.testing.assert_array_equal(ours, iso.predict(grid))
        np.testing.assert_array_equal(np.interp(x, curve["x"], curve["y"]), iso.predict(x))


def test_training_files_and_the_long_layout_of_the_same_frames_give_the_same_bundle(
    layouts: tuple[list[str], Path, pd.DataFrame], tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    frames, long_path, _ = layouts
    a = fit(wma, tmp_path / "a.json", *frames)
    b = fit(wma, tmp_path / "b.json", long_path)
    pa, pb = a.pop("provenance"), b.pop("provenance")
    assert a == b
    assert isinstance(pa, dict) and isinstance(pb, dict)
    assert pa["fit"] == pb["fit"] | {"layout": "training"}
    assert pa["method"] == pb["method"]
    assert set(pa["sources"]) == set(IDS)


BAD_FILES = [
    ("method,label,frame_path\nx,0,a/b/1.png\n", "missing 'frame_prob'"),
    (
        "method,label,frame_path,frame_prob\nx,0,a/b/1.png,0.5\nx,2,a/b/2.png,0.5\n",
        "row 2, column 'label'",
    ),
    ("method,label,frame_path,frame_prob\nx,0,a/b/1.png,1.5\n", "row 1, column 'frame_prob'"),
    (
        "method,label,frame_path,frame_prob\nx,0,a/b/1.png,0.5\nx,0,plain.png,0.5\n",
        "row 2, column 'frame_path'",
    ),
    (
        "method,label,frame_path,frame_prob\nx,0,a/b/1.png,0.5\nx,0,a/b/last.png,0.5\n",
        "row 2, column 'frame_path': the file name holds no frame number",
    ),
    (
        "method,label,frame_path,frame_prob\nx,0,a/b/1.png,0.5\nx,1,a/b/2.png,0.5\n",
        "row 2, column 'label': differs",
    ),
    (
        "method,label,frame_path,frame_prob\nx,0,a/b/1.png,0.5\nx,0,a/b/001.png,0.5\n",
        "row 2, column 'frame_path': the same frame",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_a_bad_training_file_is_one_error_line_naming_file_row_and_column(
    text: str, message: str, tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    for argv in (
        ("fit", "--frames", f"9rfa62j1={bad}", "--out", tmp_path / "o.json"),
        ("simulate", MOCK, "--frames", f"9rfa62j1={bad}"),
    ):
        code, _, err = wma("calibrate", *argv)
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"error: {bad}") and message in err, err
