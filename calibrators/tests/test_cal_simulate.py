"""``wma calibrate simulate`` against a replay written here from scratch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from wma_calibrators.synthetic import synthetic_frames

CliResult = tuple[int, str, str]
MOCK = Path(__file__).resolve().parents[2] / "services" / "local" / "wma_local" / "mock.json"


@pytest.fixture(scope="module")
def long_frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    df = synthetic_frames(n_videos=300, seed=9, frames=(8, 60))
    df["frame_index"] = df.groupby(["model_id", "video_id"]).cumcount()
    path = tmp_path_factory.mktemp("sim") / "long.csv"
    df.sample(frac=1.0, random_state=1).to_csv(path, index=False)  # rows in any order
    return path, df


def independent_replay(df: pd.DataFrame, n: int, window: int | None) -> dict[str, float]:
    """Chunk, aggregate, calibrate, noisy-OR and threshold, without the tool's code."""
    bundle = json.loads(MOCK.read_text())
    t_low, t_high = bundle["thresholds"]["t_low"], bundle["thresholds"]["t_high"]
    counts = {(label, v): 0 for label in (0, 1) for v in ("REAL", "UNCERTAIN", "FAKE")}
    for _, video in df.groupby("video_id"):
        label = int(video["label"].iloc[0])
        by_model = {
            m: g.sort_values("frame_index")["frame_prob"].to_numpy()
            for m, g in video.groupby("model_id")
        }
        length = min(len(v) for v in by_model.values())  # every model scored every frame
        for end in range(n, length + 1, n):
            start = end - n if window is None else max(0, end - window)
            survive = 1.0
            for model_id, probs in by_model.items():
                x = np.sort(probs[start:end])
                agg = bundle["models"][model_id]["aggregator"]
                if agg == "topk4":
                    score = x[-4:].mean()
                else:  # softmax_b5
                    m = (5 * x).max()
                    score = (np.log(np.mean(np.exp(5 * x - m))) + m) / 5
                iso = bundle["models"][model_id]["isotonic"]
                survive *= 1.0 - np.interp(score, iso["x"], iso["y"])
            fused = 1.0 - survive
            verdict = "REAL" if fused < t_low else "FAKE" if fused > t_high else "UNCERTAIN"
            counts[(label, verdict)] += 1
    total = sum(counts.values())
    return {
        "tpr_certain": counts[(1, "FAKE")] / (counts[(1, "FAKE")] + counts[(1, "REAL")]),
        "fpr_certain": counts[(0, "FAKE")] / (counts[(0, "FAKE")] + counts[(0, "REAL")]),
        "uncertain": (counts[(0, "UNCERTAIN")] + counts[(1, "UNCERTAIN")]) / total,
        "requests": total,
    }


def simulate(wma: Callable[..., CliResult], *args: str | Path) -> dict[str, Any]:
    code, out, err = wma("calibrate", "simulate", MOCK, *args, "--json")
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


@pytest.mark.parametrize("window", [None, 25])
def test_simulate_reports_what_an_independent_replay_of_the_same_bundle_finds(
    window: int | None, long_frames: tuple[Path, pd.DataFrame], wma: Callable[..., CliResult]
) -> None:
    path, df = long_frames
    extra = () if window is None else ("--window", str(window))
    doc = simulate(wma, path, "--frames-per-request", "10", *extra)
    want = independent_replay(df, 10, window)
    assert doc["all"]["requests"] == want["requests"]
    for key in ("tpr_certain", "fpr_certain", "uncertain"):
        assert doc["all"][key] == pytest.approx(want[key], abs=1e-15), key
    assert set(doc["methods"]) == {"EFS", "FaceSwap", "Platform", "Reenact", "real"}
    assert sum(m["requests"] for m in doc["methods"].values()) == want["requests"]


def test_a_window_changes_the_decisions_and_the_tracker_only_calms_the_banners(
    long_frames: tuple[Path, pd.DataFrame], wma: Callable[..., CliResult]
) -> None:
    path, _ = long_frames
    plain = simulate(wma, path, "--frames-per-request", "5")["all"]
    windowed = simulate(wma, path, "--frames-per-request", "5", "--window", "30")["all"]
    tracked = simulate(wma, path, "--frames-per-request", "5", "--tracker")["all"]
    assert windowed["requests"] == plain["requests"]
    # Seeing more frames per decision: fewer UNCERTAIN requests, fewer banner flips.
    assert windowed["uncertain"] < plain["uncertain"]
    assert windowed["banner_changes_per_min"] < plain["banner_changes_per_min"]
    # The tracker changes no verdict, escalates at once and calms down slowly.
    for key in ("requests", "tpr_certain", "fpr_certain", "uncertain", "first_red_s", "fakes_red"):
        assert tracked[key] == plain[key], key
    assert tracked["banner_changes_per_min"] < plain["banner_changes_per_min"]
    assert tracked["red_per_real_hour"] <= plain["red_per_real_hour"]


def test_simulate_prints_a_table_and_draws_plots(
    long_frames: tuple[Path, pd.DataFrame], tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    path, _ = long_frames
    code, out, err = wma("calibrate", "simulate", MOCK, path, "--out", tmp_path / "plots")
    assert code == 0, err
    assert out.splitlines()[0].split()[:3] == ["method", "videos", "requests"]
    assert out.splitlines()[2].startswith("all ")
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {
        "by_frames_per_request.png",
        "by_window.png",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--frames-per-request", "0"), "--frames-per-request must be in 1..32"),
        (("--frames-per-request", "10", "--window", "5"), "--window must be at least"),
        (("--frames-per-request", "32", "--window", "32"), None),
    ],
)
def test_simulate_refuses_bad_sizes_with_one_line(
    args: tuple[str, ...],
    message: str | None,
    long_frames: tuple[Path, pd.DataFrame],
    wma: Callable[..., CliResult],
) -> None:
    code, _, err = wma("calibrate", "simulate", MOCK, long_frames[0], *args)
    if message is None:
        assert code == 0, err
    else:
        assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
