"""The fusion rules: the recorded formulas, monotone in every member, and the
interval rule for missing members under each of them."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from wma_core import FusionRule, fuse, noisy_or

RULES = [
    FusionRule(),
    FusionRule("sum_logits"),
    FusionRule("stacked", weights={"a": 0.5, "b": 0.0, "c": 2.0}, bias=-1.5),
]


def formula(rule: FusionRule, p: dict[str, float]) -> float:
    def lg(x: float) -> float:
        q = min(max(x, 1e-6), 1 - 1e-6)
        return math.log(q / (1 - q))

    if rule.kind == "noisy_or":
        return 1 - math.prod(1 - x for x in p.values())
    z = (
        sum(lg(x) for x in p.values())
        if rule.kind == "sum_logits"
        else rule.bias + sum(rule.weights[m] * lg(x) for m, x in p.items())
    )
    return 1 / (1 + math.exp(-z))


@pytest.mark.parametrize("rule", RULES, ids=[r.kind for r in RULES])
def test_each_rule_is_its_formula_and_never_decreases_in_a_member(rule: FusionRule) -> None:
    grid = [0.0, 1e-7, 0.01, 0.3, 0.5, 0.9, 0.999, 1.0]
    for a, b, c in itertools.product(grid, repeat=3):
        p = {"a": a, "b": b, "c": c}
        got = fuse(p, {}, rule).score
        assert got == pytest.approx(formula(rule, p), rel=1e-12, abs=1e-15)
        for m in p:
            for higher in (x for x in grid if x > p[m]):
                assert fuse(p | {m: higher}, {}, rule).score >= got  # type: ignore[operator]


@pytest.mark.parametrize("rule", RULES, ids=[r.kind for r in RULES])
def test_a_missing_member_is_bounded_by_its_output_range_ends(rule: FusionRule) -> None:
    ranges = {"a": (0.0, 1.0), "b": (0.1, 0.8), "c": (0.02, 0.95)}
    fused = fuse({"a": 0.7, "b": None, "c": 0.4}, ranges, rule)
    assert fused.score is None and fused.missing == ("b",)
    lo = formula(rule, {"a": 0.7, "c": 0.4, "b": 0.1})
    hi = formula(rule, {"a": 0.7, "c": 0.4, "b": 0.8})
    assert fused.interval == pytest.approx((lo, hi), rel=1e-12)


def test_noisy_or_is_the_historical_scalar_path() -> None:
    p = {"a": 0.3, "b": 0.91, "c": 0.5}
    assert fuse(p, {}).score == noisy_or(list(p.values()))
    np.testing.assert_array_equal(
        FusionRule().combine_rows({m: [v] for m, v in p.items()}), [fuse(p, {}).score]
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "max"},
        {"kind": "stacked"},
        {"kind": "stacked", "weights": {"a": -1.0}},
        {"kind": "noisy_or", "bias": 1.0},
        {"kind": "sum_logits", "eps": 0.0},
    ],
)
def test_a_rule_that_could_decrease_or_is_unknown_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FusionRule(**kwargs)  # type: ignore[arg-type]
