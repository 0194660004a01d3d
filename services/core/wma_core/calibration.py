"""Evaluation of an exported isotonic calibrator.

scikit-learn's ``IsotonicRegression(out_of_bounds="clip").predict`` is linear
interpolation between ``X_thresholds_`` and ``y_thresholds_``, clipped to the
end values outside their range; :class:`IsotonicCurve` reproduces it from the
breakpoints alone, so no pickled estimator is ever needed at serving time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class CurveError(ValueError):
    """Breakpoints that are not an isotonic curve; ``field`` names the offending
    point (``x[2]``, ``y[0]``), or ``x``/``""`` for the lists as a whole."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"isotonic {field or 'x and y'}: {problem}")
        self.field = field
        self.problem = problem


def _first(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True)
class IsotonicCurve:
    """Breakpoints ``x`` (strictly increasing) and ``y`` (non-decreasing, in [0, 1])."""

    x: FloatArray = field(repr=False)
    y: FloatArray = field(repr=False)

    @classmethod
    def from_points(cls, x: npt.ArrayLike, y: npt.ArrayLike) -> IsotonicCurve:
        xs = np.asarray(x, dtype=np.float64).ravel()
        ys = np.asarray(y, dtype=np.float64).ravel()
        same = "x and y must have the same non-zero length"
        if xs.size == 0:
            raise CurveError("x", f"{same}: x is empty")
        if xs.size != ys.size:
            raise CurveError("", f"{same}: x has {xs.size} points but y has {ys.size}")
        for name, values in (("x", xs), ("y", ys)):
            if not np.all(np.isfinite(values)):
                raise CurveError(f"{name}[{_first(~np.isfinite(values))}]", "must be finite")
        if np.any(np.diff(xs) <= 0):
            i = _first(np.diff(xs) <= 0) + 1
            raise CurveError(f"x[{i}]", "x must be strictly increasing")
        if np.any(np.diff(ys) < 0):
            raise CurveError(f"y[{_first(np.diff(ys) < 0) + 1}]", "y must be non-decreasing")
        if ys[0] < 0.0 or ys[-1] > 1.0:
            i = 0 if ys[0] < 0.0 else ys.size - 1
            raise CurveError(f"y[{i}]", "y must lie within [0, 1]")
        xs.setflags(write=False)
        ys.setflags(write=False)
        return cls(xs, ys)

    @property
    def output_range(self) -> tuple[float, float]:
        """The smallest and largest value the calibrator can return."""
        return float(self.y[0]), float(self.y[-1])

    def predict(self, values: npt.ArrayLike) -> FloatArray:
        """Calibrated values; inputs outside ``[x[0], x[-1]]`` are clipped."""
        v = np.asarray(values, dtype=np.float64)
        return np.interp(v, self.x, self.y)

    def __call__(self, value: float) -> float:
        return float(self.predict(np.asarray([value]))[0])
