"""Aggregators equal their formulas; names parse only in their valid forms."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from wma_core import VALID_FORMS, AggregatorError, aggregate, parse_aggregator

frame_probs = st.lists(
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_subnormal=False),
    min_size=1,
    max_size=40,
)


def reference_topk(x: list[float], k: int) -> float:
    k = max(1, min(k, len(x)))
    top = sorted(x, reverse=True)[:k]
    return math.fsum(top) / k


def reference_softmax(x: list[float], b: float) -> float:
    m = max(b * v for v in x)
    return (math.log(math.fsum(math.exp(b * v - m) for v in x) / len(x)) + m) / b


@settings(max_examples=300)
@given(x=frame_probs, k=st.integers(min_value=1, max_value=64))
def test_topk_is_the_mean_of_the_k_largest_values_with_k_clipped(x: list[float], k: int) -> None:
    assert aggregate(f"topk{k}", x) == pytest.approx(reference_topk(x, k), rel=1e-12, abs=1e-15)


@settings(max_examples=300)
@given(x=frame_probs, b=st.sampled_from([0.5, 1, 2, 5, 10, 20, 50, 100]))
def test_softmax_pooling_is_log_sum_exp_over_b(x: list[float], b: float) -> None:
    got = aggregate(f"softmax_b{b}", x)
    assert got == pytest.approx(reference_softmax(x, float(b)), rel=1e-12, abs=1e-12)


@given(x=frame_probs)
def test_pooling_stays_between_mean_and_max(x: list[float]) -> None:
    mean = math.fsum(x) / len(x)
    for name in ("topk4", "softmax_b5", "mean", "max", "median"):
        got = aggregate(name, x)
        assert got is not None
        assert min(x) - 1e-12 <= got <= max(x) + 1e-12
        if name in ("topk4", "softmax_b5", "max"):
            assert got >= mean - 1e-12


@given(value=st.floats(min_value=0.0, max_value=1.0), n=st.integers(min_value=1, max_value=32))
def test_equal_frames_aggregate_to_their_value(value: float, n: int) -> None:
    # The mock model server's grey frames rely on this (see docs/calibrators.md).
    for name in ("topk4", "softmax_b5", "mean", "max", "median"):
        assert aggregate(name, [value] * n) == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("name", ["topk4", "softmax_b5", "mean", "max", "median"])
def test_no_frames_give_no_score_not_a_default(name: str) -> None:
    assert aggregate(name, []) is None


def test_non_finite_frame_probabilities_are_refused() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        aggregate("topk4", [0.5, float("nan")])


def is_valid_name(name: str) -> bool:
    if name in ("mean", "max", "median"):
        return True
    if re.fullmatch(r"topk[1-9][0-9]*", name, flags=re.ASCII):
        return True
    match = re.fullmatch(r"softmax_b([0-9]+(\.[0-9]+)?)", name, flags=re.ASCII)
    return match is not None and float(match.group(1)) > 0


@pytest.mark.parametrize(
    "name", ["topk1", "topk4", "topk32", "softmax_b5", "softmax_b0.5", "softmax_b10", "mean"]
)
def test_valid_aggregator_names_parse_to_their_canonical_name(name: str) -> None:
    assert parse_aggregator(name).name == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "topk",
        "topk0",
        "topk04",
        "topk-1",
        "TOPK4",
        "topk 4",
        " topk4",
        "topk4\n",
        "softmax_b0",
        "softmax_b",
        "softmax_b-1",
        "softmax_b1e3",
        "softmax5",
        "avg",
        "p95",
    ],
)
def test_unknown_aggregator_names_are_refused_listing_the_valid_forms(name: str) -> None:
    with pytest.raises(AggregatorError) as info:
        parse_aggregator(name)
    assert repr(name) in str(info.value)
    assert VALID_FORMS in str(info.value)


@settings(max_examples=500)
@given(
    name=st.one_of(
        st.text(max_size=14),
        st.from_regex(r"(topk|softmax_b)[0-9.\-e ]{0,5}\n?", fullmatch=True),
    )
)
def test_any_name_parses_exactly_when_it_has_a_valid_form(name: str) -> None:
    assume(name not in ("mean", "max", "median"))
    if is_valid_name(name):
        assert parse_aggregator(name).name == name
    else:
        with pytest.raises(AggregatorError, match="valid forms"):
            parse_aggregator(name)
