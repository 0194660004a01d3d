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


@dataclass(frozen=True)
class IsotonicCurve:
    """Breakpoints ``x`` (strictly increasing) and ``y`` (non-decreasing, in [0, 1])."""

    x: FloatArray = field(repr=False)
    y: FloatArray = field(repr=False)

    @classmethod
    def from_points(cls, x: npt.ArrayLike, y: npt.ArrayLike) -> IsotonicCurve:
        xs = np.asarray(x, dtype=np.float64).ravel()
        ys = np.asarray(y, dtype=np.float64).ravel()
        if xs.size == 0 or xs.size != ys.size:
            raise ValueError("isotonic x and y must have the same non-zero length")
        if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
            raise ValueError("isotonic x and y must be finite")
        if np.any(np.diff(xs) <= 0):
            raise ValueError("isotonic x must be strictly increasing")
        if np.any(np.diff(ys) < 0):
            raise ValueError("isotonic y must be non-decreasing")
        if ys[0] < 0.0 or ys[-1] > 1.0:
            raise ValueError("isotonic y must lie within [0, 1]")
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
