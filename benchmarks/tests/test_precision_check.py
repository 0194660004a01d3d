"""The precision check measures what it says: TF32 rounding, near-band videos, verdicts
through wma_core, and the command docs/benchmarks.md reports."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import precision_check
import pytest
import torch
from wma_core import Thresholds, aggregate, noisy_or
from wma_core.bundle import load_bundle

REPO = Path(__file__).resolve().parents[2]
BUNDLE = load_bundle(REPO / "services" / "local" / "wma_local" / "mock.json")


def test_tf32_rounding_keeps_ten_mantissa_bits_rounding_to_nearest_even() -> None:
    ulp = 2.0**-10  # TF32's spacing just above 1.0
    x = torch.tensor([1.0, 1 + ulp / 4, 1 + ulp * 3 / 4, 1 + ulp / 2, 1 + ulp * 3 / 2, -3.0])
    rounded = precision_check._round_tf32(x)
    expected = [1.0, 1.0, 1 + ulp, 1.0, 1 + 2 * ulp, -3.0]  # ties go to the even mantissa
    assert rounded.tolist() == expected
    values = torch.randn(10_000)
    error = (precision_check._round_tf32(values) - values).abs() / values.abs()
    assert error.max() <= 2.0**-11  # half a TF32 ulp, relative


def test_emulated_tf32_changes_a_linear_layer_by_about_tf32_precision() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(256, 256)
    x = torch.randn(4, 256)
    exact = layer(x)
    precision_check.emulate_tf32(layer)
    emulated = layer(x)
    relative = ((emulated - exact).abs().max() / exact.abs().max()).item()
    assert 1e-6 < relative < 1e-2


@pytest.mark.parametrize("thresholds", [BUNDLE.thresholds, precision_check.PRODUCTION])
def test_near_band_videos_sit_around_the_band_and_verdicts_come_from_wma_core(
    thresholds: Thresholds,
) -> None:
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.2, 0.5, 24)
    videos = precision_check.near_band_videos(
        probs, BUNDLE, thresholds, want=30, per_video=10, rng=rng
    )
    fused, verdicts = precision_check.fused_verdicts(probs, videos, BUNDLE, thresholds)
    width = thresholds.t_high - thresholds.t_low
    assert len(verdicts) == 30
    assert ((fused >= thresholds.t_low - width) & (fused <= thresholds.t_high + width)).all()
    assert {v: verdicts.count(v) for v in set(verdicts)} == {
        "REAL": 10,
        "UNCERTAIN": 10,
        "FAKE": 10,
    }
    np.testing.assert_allclose(
        precision_check._screen(probs, videos, BUNDLE), fused, rtol=0, atol=1e-9
    )
    # One video by hand: shifted frame logits, each member's aggregator and curve, noisy-OR.
    logits = np.log(probs / (1 - probs))[videos.frames[0]]
    calibrated = []
    for m, cal in enumerate(BUNDLE.models.values()):
        shifted = 1 / (1 + np.exp(-(logits + videos.shifts[0, m])))
        value = aggregate(cal.aggregator, shifted)
        assert value is not None
        calibrated.append(cal.curve(value))
    assert fused[0] == pytest.approx(noisy_or(calibrated), abs=1e-12)


def test_a_precision_error_flips_verdicts_only_near_a_threshold() -> None:
    rng = np.random.default_rng(1)
    probs = rng.uniform(0.2, 0.5, 24)
    thresholds = precision_check.PRODUCTION
    videos = precision_check.near_band_videos(
        probs, BUNDLE, thresholds, want=300, per_video=10, rng=rng
    )
    _, expected = precision_check.fused_verdicts(probs, videos, BUNDLE, thresholds)
    _, same = precision_check.fused_verdicts(probs.copy(), videos, BUNDLE, thresholds)
    nudged = 1 / (1 + np.exp(-(np.log(probs / (1 - probs)) + 0.02)))
    _, moved = precision_check.fused_verdicts(nudged, videos, BUNDLE, thresholds)
    assert same == expected
    flips = sum(a != b for a, b in zip(expected, moved, strict=True))
    assert 0 < flips < len(expected) // 2


def test_the_documented_run_parses_with_the_scripts_parser() -> None:
    doc = (REPO / "docs" / "benchmarks.md").read_text()
    section = doc[doc.index("## Precision") :]
    runs = re.findall(r"^Run: `([^`]+)`", section, re.MULTILINE)
    assert runs, "docs/benchmarks.md has no 'Run:' line in its Precision section"
    for run in runs:
        nice, _, _, python, script, *args = run.split()
        assert (nice, python, script) == (
            "nice",
            ".venv/bin/python",
            "benchmarks/precision_check.py",
        )
        precision_check.build_parser().parse_args(args)
