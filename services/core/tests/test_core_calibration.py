"""IsotonicCurve evaluation equals scikit-learn's clipped isotonic prediction."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression
from wma_core import IsotonicCurve

probs = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_subnormal=False)
queries = st.floats(min_value=-2.0, max_value=3.0, allow_nan=False, allow_subnormal=False)


@st.composite
def training_sets(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    n = draw(st.integers(min_value=1, max_value=60))
    x = draw(st.lists(probs, min_size=n, max_size=n))
    # Labels 0/1 like real training, or soft targets in [0, 1].
    soft = draw(st.booleans())
    y = draw(st.lists(probs if soft else st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
    return x, y


@settings(max_examples=200, deadline=None)
@given(data=training_sets(), query=st.lists(queries, min_size=1, max_size=30))
def test_curve_predicts_exactly_what_the_fitted_sklearn_model_predicts(
    data: tuple[list[float], list[float]], query: list[float]
) -> None:
    x, y = data
    model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(x, y)
    curve = IsotonicCurve.from_points(model.X_thresholds_, model.y_thresholds_)
    # Include the breakpoints themselves and points just outside the fitted range.
    lo, hi = float(model.X_thresholds_[0]), float(model.X_thresholds_[-1])
    points = np.array([*query, lo, hi, lo - 1e-9, hi + 1e-9, *model.X_thresholds_])
    np.testing.assert_allclose(curve.predict(points), model.predict(points), rtol=0, atol=1e-12)
    assert curve(points[0]) == pytest.approx(float(model.predict(points[:1])[0]), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(data=training_sets(), outside=st.floats(min_value=0.0, max_value=100.0))
def test_inputs_outside_the_breakpoints_are_clipped_to_the_end_values(
    data: tuple[list[float], list[float]], outside: float
) -> None:
    x, y = data
    model = IsotonicRegression(out_of_bounds="clip").fit(x, y)
    curve = IsotonicCurve.from_points(model.X_thresholds_, model.y_thresholds_)
    lo, hi = curve.output_range
    assert curve(float(curve.x[0]) - outside) == lo
    assert curve(float(curve.x[-1]) + outside) == hi


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([], [], "same non-zero length"),
        ([0.1, 0.2], [0.5], "same non-zero length"),
        ([0.2, 0.1], [0.1, 0.2], "strictly increasing"),
        ([0.1, 0.1], [0.1, 0.2], "strictly increasing"),
        ([0.1, 0.2], [0.3, 0.2], "non-decreasing"),
        ([0.1, 0.2], [-0.1, 0.2], "within [0, 1]"),
        ([0.1, 0.2], [0.1, 1.5], "within [0, 1]"),
        ([0.1, float("nan")], [0.1, 0.2], "finite"),
    ],
)
def test_invalid_breakpoints_are_refused(x: list[float], y: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        IsotonicCurve.from_points(x, y)
