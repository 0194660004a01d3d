"""Choosing the UNCERTAIN band on the fused score.

The band is centred on the Youden point and sized so that a target share of
videos is UNCERTAIN. Fused noisy-OR scores crowd near 1, so the band is chosen
on *ranks*: blocks of equal scores are added around the centre, alternating
sides to keep it centred in rank, and a block is added only if that brings the
count closer to the target, so a large block of ties cannot blow the rate.
Thresholds sit halfway between the last score inside and the first outside.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from wma_core import Thresholds

from wma_calibrators.errors import CalibrateError

FloatArray = npt.NDArray[np.float64]


def _between(inside: float, outside: float) -> float:
    mid = 0.5 * (inside + outside)
    # Adjacent floats: the midpoint rounds onto one of them; keep the inside value.
    return inside if mid == outside else mid


def choose_band(fused: FloatArray, centre: float, uncertain_rate: float) -> Thresholds:
    """Thresholds around ``centre`` leaving about ``uncertain_rate`` of ``fused`` UNCERTAIN."""
    if not 0.0 < uncertain_rate < 1.0:
        raise CalibrateError(f"uncertain rate must be in (0, 1), got {uncertain_rate}")
    values, counts = np.unique(np.asarray(fused, dtype=np.float64), return_counts=True)
    target = uncertain_rate * float(counts.sum())
    if target < 1.0:
        raise CalibrateError(
            f"{counts.sum()} videos are too few for an uncertain rate of {uncertain_rate}"
        )
    # Blocks [lo, hi) of unique values are inside the band.
    lo = hi = int(np.searchsorted(values, centre, side="left"))
    taken_low = taken_high = 0
    while True:
        taken = taken_low + taken_high
        left = int(counts[lo - 1]) if lo > 0 else None
        right = int(counts[hi]) if hi < values.size else None
        order = ["high", "low"] if taken_high <= taken_low else ["low", "high"]
        for side in order:
            size = right if side == "high" else left
            if size is not None and abs(taken + size - target) < abs(taken - target):
                if side == "high":
                    hi, taken_high = hi + 1, taken_high + size
                else:
                    lo, taken_low = lo - 1, taken_low + size
                break
        else:
            break
    if hi == lo:
        raise CalibrateError("could not place an UNCERTAIN band: scores are too coarse")
    t_low = _between(float(values[lo]), float(values[lo - 1])) if lo > 0 else float(values[lo])
    if hi < values.size:
        t_high = _between(float(values[hi - 1]), float(values[hi]))
    else:
        t_high = 0.5 * (float(values[hi - 1]) + 1.0)
    try:
        return Thresholds(t_low, t_high)
    except ValueError as exc:
        raise CalibrateError(
            f"fused scores give an invalid band ({exc}); "
            "the UNCERTAIN band needs distinct scores strictly inside (0, 1)"
        ) from None
