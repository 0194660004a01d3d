"""``wma calibrate fit``: calibrators, uncertain rate, thresholds, layouts, bad input."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression
from wma_calibrators import load_bundle
from wma_calibrators.errors import CalibrateError
from wma_calibrators.fit import fuse_rows, out_of_fold
from wma_calibrators.scores import read_table, video_scores
from wma_calibrators.thresholds import choose_band
from wma_core import Verdict, verdict_for_score

CliResult = tuple[int, str, str]
AGGS = {"9rfa62j1": "topk4", "1mjgo9w1": "softmax_b5", "dfsesrgu": "topk4", "4vtny88m": "topk4"}


def reference_aggregate(frames: pd.DataFrame) -> pd.DataFrame:
    """Per-video scores computed here from the formulas (docs/calibrators.md)."""

    def pool(group: pd.Series) -> float:
        x = np.sort(group.to_numpy())[::-1]
        key: tuple[str, str] = group.name  # type: ignore[assignment]
        if AGGS[str(key[1])] == "topk4":
            return float(np.mean(x[:4]))
        m = 5 * x.max()
        return float((math.log(np.mean(np.exp(5 * x - m))) + m) / 5)

    wide = frames.groupby(["video_id", "model_id"])["frame_prob"].apply(pool).unstack()
    meta = frames.groupby("video_id")[["label", "method"]].first()
    return meta.join(wide).reset_index()


def uncertain_share(fused: np.ndarray, bundle_path: Path) -> float:
    t = load_bundle(bundle_path).thresholds
    verdicts = [verdict_for_score(float(s), t) for s in fused]
    return verdicts.count(Verdict.UNCERTAIN) / len(verdicts)


@pytest.mark.parametrize("rate", [0.02, 0.05])
def test_fit_reaches_the_target_uncertain_rate_on_out_of_fold_scores(
    rate: float, small_training_csv: Path, tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    out = tmp_path / "bundle.json"
    code, stdout, err = wma(
        "calibrate", "fit", small_training_csv, "--out", out, "--uncertain-rate", str(rate)
    )
    assert code == 0, err
    # Recompute the out-of-fold fused scores of the same split and check the real rate.
    df, _ = read_table(small_training_csv)
    oof = out_of_fold(video_scores(df, AGGS), k=5, seed=0)
    share = uncertain_share(fuse_rows(oof), out)
    assert abs(share - rate) <= 0.002
    bundle = load_bundle(out)
    assert bundle.provenance["fit"]["oof_uncertain_rate"] == pytest.approx(share)
    assert f"{100 * share:.2f}%" in stdout.split("\nall ")[1].splitlines()[0]
    assert "fused (noisy-OR)" in stdout and "TPR(certain)" in stdout and "FaceSwap" in stdout


def test_exported_calibrators_are_isotonic_fits_of_the_aggregated_scores(
    small_training_csv: Path, tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    out = tmp_path / "bundle.json"
    assert wma("calibrate", "fit", small_training_csv, "--out", out)[0] == 0
    bundle = load_bundle(out)
    per_video = reference_aggregate(pd.read_csv(small_training_csv, dtype={"video_id": str}))
    for model_id, aggregator in AGGS.items():
        cal = bundle.models[model_id]
        assert cal.aggregator == aggregator
        expected = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
            per_video[model_id], per_video["label"]
        )
        np.testing.assert_allclose(cal.curve.x, expected.X_thresholds_, rtol=0, atol=1e-12)
        np.testing.assert_allclose(cal.curve.y, expected.y_thresholds_, rtol=0, atol=1e-12)
        assert cal.metrics["n_videos"] == len(per_video)
        assert 0.5 < cal.metrics["auc"] <= 1.0
    prov = bundle.provenance
    assert prov["fit"]["k"] == 5 and prov["fit"]["seed"] == 0
    assert "5-fold" in prov["method"] and "seed 0" in prov["method"]
    assert prov["source_sha256"] == hashlib.sha256(small_training_csv.read_bytes()).hexdigest()


def test_wide_layout_parquet_gives_the_same_bundle_as_the_long_layout(
    small_training_csv: Path, tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    long_out, wide_out = tmp_path / "long.json", tmp_path / "wide.json"
    wide_in = tmp_path / "wide.parquet"
    frames = pd.read_csv(small_training_csv, dtype={"video_id": str})
    reference_aggregate(frames).to_parquet(wide_in, index=False)
    assert wma("calibrate", "fit", small_training_csv, "--out", long_out)[0] == 0
    code, _, err = wma("calibrate", "fit", wide_in, "--out", wide_out)
    assert code == 0, err
    a, b = load_bundle(long_out), load_bundle(wide_out)
    assert a.thresholds.t_low == pytest.approx(b.thresholds.t_low, abs=1e-12)
    assert a.thresholds.t_high == pytest.approx(b.thresholds.t_high, abs=1e-12)
    for model_id in AGGS:
        np.testing.assert_allclose(
            a.models[model_id].curve.x, b.models[model_id].curve.x, atol=1e-12
        )
        np.testing.assert_allclose(
            a.models[model_id].curve.y, b.models[model_id].curve.y, atol=1e-12
        )
    assert b.provenance["fit"]["layout"] == "wide"


def test_created_comes_from_the_flag_or_source_date_epoch(
    small_training_csv: Path,
    tmp_path: Path,
    wma: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert wma("calibrate", "fit", small_training_csv, "--out", tmp_path / "a.json")[0] == 0
    assert load_bundle(tmp_path / "a.json").provenance["created"] == "1970-01-02T00:00:00Z"
    args = ("--out", tmp_path / "b.json", "--created", "2024-05-01T12:00:00Z")
    assert wma("calibrate", "fit", small_training_csv, *args)[0] == 0
    assert load_bundle(tmp_path / "b.json").provenance["created"] == "2024-05-01T12:00:00Z"


def _bad_csv(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(rows)
    return path


GOOD_ROWS = "".join(f"9rfa62j1,v{i},{i % 2},{0.2 + 0.6 * (i % 2)}\n" for i in range(12))


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("model_id,video_id,label,frame_prob\n" + GOOD_ROWS + "9rfa62j1,v99,2,0.5\n", (), "label"),
        (
            "model_id,video_id,label,frame_prob\n" + GOOD_ROWS + "9rfa62j1,v99,1,1.5\n",
            (),
            "frame_prob",
        ),
        ("model_id,video_id,frame_prob\n9rfa62j1,v1,0.5\n", (), "missing ['label']"),
        (
            "model_id,video_id,label,frame_prob\n" + GOOD_ROWS.replace("9rfa62j1", "zz"),
            (),
            "no aggregator for model 'zz'",
        ),
        (
            "model_id,video_id,label,frame_prob\n" + GOOD_ROWS,
            ("--aggregator", "9rfa62j1=top4"),
            "valid forms",
        ),
        (
            "model_id,video_id,label,frame_prob\n" + GOOD_ROWS,
            ("--aggregator", "9rfa62j1"),
            "MODEL_ID=NAME",
        ),
        (
            "model_id,video_id,label,frame_prob\n" + GOOD_ROWS,
            ("--uncertain-rate", "1.5"),
            "uncertain rate",
        ),
        ("model_id,video_id,label,frame_prob\n" + GOOD_ROWS, ("--folds", "20"), "20-fold"),
        ("video_id,label\nv1,0\n", (), "one column of aggregated scores"),
        ("video_id,label,m1\nv1,0,0.1\nv1,1,0.9\n", ("--aggregator", "m1=mean"), "repeated"),
    ],
)
def test_unusable_scores_are_refused_with_a_message_naming_the_problem(
    content: str, args: tuple[str, ...], message: str, tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    out = tmp_path / "out.json"
    code, stdout, err = wma("calibrate", "fit", _bad_csv(tmp_path, content), "--out", out, *args)
    assert code == 2, stdout
    assert message in err and err.startswith("error: ")
    assert not out.exists()


def test_band_with_big_blocks_of_tied_scores_stays_near_the_target() -> None:
    # 1000 videos: many exact ties (isotonic plateaus) and a crowd just below 1.
    fused = np.concatenate(
        [
            np.full(400, 0.01),
            np.full(30, 0.4),
            np.linspace(0.95, 0.96, 10),
            np.full(60, 0.97),
            1 - np.logspace(-12, -3, 300),
            np.full(200, 1.0),
        ]
    )
    t = choose_band(fused, centre=0.955, uncertain_rate=0.02)
    uncertain = int(np.sum((fused >= t.t_low) & (fused <= t.t_high)))
    # 20 wanted: the 10 distinct values plus the next block would give 70 or 40.
    assert uncertain == 10
    assert t.t_low < 0.95 and 0.96 < t.t_high < 0.97


@settings(max_examples=50, deadline=None)
@given(
    nines=st.lists(
        st.floats(min_value=0.01, max_value=14.0), min_size=200, max_size=400, unique=True
    ),
    rate=st.sampled_from([0.01, 0.02, 0.05, 0.1]),
    centre_q=st.floats(min_value=0.2, max_value=0.8),
)
def test_band_on_crowded_distinct_scores_holds_the_target_share_by_rank(
    nines: list[float], rate: float, centre_q: float
) -> None:
    # Distinct scores crowding towards 1 like noisy-OR ones (ties: see the test above).
    fused = np.unique(1.0 - 10.0 ** -np.asarray(nines))
    assume(fused.size >= 150 and 0.0 < fused[0] and fused[-1] < 1.0)
    values = fused
    centre = float(np.quantile(values, centre_q))
    t = choose_band(fused, centre, rate)
    uncertain = int(np.sum((fused >= t.t_low) & (fused <= t.t_high)))
    assert abs(uncertain - rate * len(fused)) <= 0.5
    assert t.t_low <= centre <= t.t_high or uncertain <= 1


def test_too_few_videos_for_the_rate_is_an_error() -> None:
    with pytest.raises(CalibrateError, match="too few"):
        choose_band(np.linspace(0.1, 0.9, 20), 0.5, 0.02)


def test_bundle_json_has_no_non_finite_numbers(
    small_training_csv: Path, tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    out = tmp_path / "b.json"
    assert wma("calibrate", "fit", small_training_csv, "--out", out)[0] == 0
    json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"raw {c} in bundle"))
