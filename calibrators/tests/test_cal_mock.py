"""``services/local/wma_local/mock.json``: reproducible from the seeded synthetic set, and its
grey-level verdict table (which demos and gateway tests rely on) is documented."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from wma_calibrators import load_bundle
from wma_calibrators.verdict_table import format_ranges, grey_levels, verdict_ranges
from wma_core import Verdict, decide, fuse

CliResult = tuple[int, str, str]
ROOT = Path(__file__).resolve().parents[2]
MOCK = ROOT / "services" / "local" / "wma_local" / "mock.json"
DOC = ROOT / "docs" / "calibrators.md"


def test_regenerating_the_mock_bundle_reproduces_the_committed_calibrators(
    tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    committed = json.loads(MOCK.read_text())
    train = tmp_path / "mock-train.csv"
    assert wma("calibrate", "synth", "--seed", "7", "--out", train)[0] == 0
    out = tmp_path / "mock.json"
    created = committed["provenance"]["created"]
    code, _, err = wma("calibrate", "fit", train, "--out", out, "--created", created)
    assert code == 0, err
    fresh = json.loads(out.read_text())
    for key in ("t_low", "t_high"):
        assert abs(fresh["thresholds"][key] - committed["thresholds"][key]) <= 1e-12
    assert fresh["models"].keys() == committed["models"].keys()
    for model_id, entry in committed["models"].items():
        new = fresh["models"][model_id]
        assert new["aggregator"] == entry["aggregator"]
        for axis in ("x", "y"):
            np.testing.assert_allclose(new["isotonic"][axis], entry["isotonic"][axis], atol=1e-12)
    assert fresh["provenance"]["fit"] == committed["provenance"]["fit"]
    # Everything else too, as values: the last digit of a float's repr may move
    # with numpy or scikit-learn releases, so floats compare within a tolerance.
    assert_same_json(fresh, committed, "bundle")


def assert_same_json(got: object, want: object, where: str) -> None:
    if isinstance(want, float) and isinstance(got, int | float):
        assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), f"{where}: {got} != {want}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key, value in want.items():
            assert_same_json(got[key], value, f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same_json(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def test_mock_bundle_gives_real_uncertain_and_fake_grey_levels_in_that_order() -> None:
    bundle = load_bundle(MOCK)
    assert {m: c.aggregator for m, c in bundle.models.items()} == {
        "9rfa62j1": "topk4",
        "1mjgo9w1": "softmax_b5",
        "dfsesrgu": "topk4",
        "4vtny88m": "topk4",
    }
    ranges = verdict_ranges(grey_levels(bundle))
    assert [r.verdict for r in ranges] == [Verdict.REAL, Verdict.UNCERTAIN, Verdict.FAKE]
    real, uncertain, fake = ranges
    assert real.first == 0 and fake.last == 255
    assert uncertain.last - uncertain.first + 1 >= 5
    assert real.last - real.first >= 20 and fake.last - fake.first >= 20


def test_documented_grey_level_table_matches_the_committed_bundle(
    wma: Callable[..., CliResult],
) -> None:
    table = format_ranges(grey_levels(load_bundle(MOCK)))
    assert table in DOC.read_text(encoding="utf-8")
    code, out, _ = wma("calibrate", "verdict-table", MOCK)
    assert code == 0 and out.strip() == table


def test_verdict_table_honours_a_mock_bias(wma: Callable[..., CliResult]) -> None:
    # A positive bias on every model moves every boundary to darker grey levels.
    plain = verdict_ranges(grey_levels(load_bundle(MOCK)))
    biased = verdict_ranges(
        grey_levels(load_bundle(MOCK), dict.fromkeys(load_bundle(MOCK).models, 0.1))
    )
    assert biased[0].last < plain[0].last and biased[1].last < plain[1].last
    code, _, err = wma("calibrate", "verdict-table", MOCK, "--bias", "9rfa62j1=high")
    assert code == 2 and "MODEL_ID=FLOAT" in err


def test_documented_degraded_grey_levels_hold_with_one_member_missing() -> None:
    bundle = load_bundle(MOCK)
    for missing in bundle.models:
        for value, expected in (
            (64, Verdict.UNCERTAIN),
            (144, Verdict.UNCERTAIN),
            (220, Verdict.FAKE),
        ):
            calibrated = {
                m: None if m == missing else c.curve(value / 255) for m, c in bundle.models.items()
            }
            decision = decide(fuse(calibrated, bundle.output_ranges()), bundle.thresholds)
            assert decision.verdict is expected, (missing, value)
