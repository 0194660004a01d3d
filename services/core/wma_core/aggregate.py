"""Per-model aggregation of per-frame fake probabilities into one score.

Names follow the training pipeline: ``topkK`` (mean of the K largest values),
``softmax_bB`` (log-sum-exp pooling with temperature B), ``mean``, ``max``,
``median``. An empty input has no score (``None``), never a default value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

VALID_FORMS = "topkK (K >= 1, e.g. topk4), softmax_bB (B > 0, e.g. softmax_b5), mean, max, median"

# The valid names as one regular expression, for JSON schemas (the Helm chart's
# values schema): exactly the names parse_aggregator accepts (B > 0 written out:
# digits with a non-zero one before the point, or zeros and a non-zero fraction).
AGGREGATOR_PATTERN = (
    r"^(mean|max|median|topk[1-9][0-9]*"
    r"|softmax_b([0-9]*[1-9][0-9]*(\.[0-9]+)?|0+\.[0-9]*[1-9][0-9]*))$"
)

_TOPK = re.compile(r"^topk([1-9][0-9]*)$")
_SOFTMAX = re.compile(r"^softmax_b([0-9]+(?:\.[0-9]+)?)$")


class AggregatorError(ValueError):
    """An aggregator name that is not one of the valid forms."""


def topk_mean(x: FloatArray, k: int) -> float:
    """Mean of the ``k`` largest values, ``k`` clipped to ``[1, len(x)]``."""
    k = max(1, min(k, x.size))
    top = np.partition(x, x.size - k)[x.size - k :]
    return float(np.mean(top))


def softmax_pool(x: FloatArray, beta: float) -> float:
    """``(log(mean(exp(B*x - m))) + m) / B`` with ``m = max(B*x)``."""
    scaled = beta * x
    m = float(np.max(scaled))
    return float((math.log(float(np.mean(np.exp(scaled - m)))) + m) / beta)


@dataclass(frozen=True)
class Aggregator:
    """A parsed aggregator: its canonical name and the pooling function."""

    name: str
    pool: Callable[[FloatArray], float]

    def __call__(self, values: npt.ArrayLike) -> float | None:
        x = np.asarray(values, dtype=np.float64).ravel()
        if x.size == 0:
            return None
        if not np.all(np.isfinite(x)):
            raise ValueError("aggregator input contains non-finite values")
        return self.pool(x)


def parse_aggregator(name: str) -> Aggregator:
    """Parse an aggregator name; unknown names raise :class:`AggregatorError`."""
    if name == "mean":
        return Aggregator(name, lambda x: float(np.mean(x)))
    if name == "max":
        return Aggregator(name, lambda x: float(np.max(x)))
    if name == "median":
        return Aggregator(name, lambda x: float(np.median(x)))
    if match := _TOPK.fullmatch(name):
        k = int(match.group(1))
        return Aggregator(name, lambda x: topk_mean(x, k))
    if match := _SOFTMAX.fullmatch(name):
        beta = float(match.group(1))
        if beta > 0:
            return Aggregator(name, lambda x: softmax_pool(x, beta))
    raise AggregatorError(f"unknown aggregator {name!r}; valid forms: {VALID_FORMS}")


def aggregate(name: str, values: npt.ArrayLike) -> float | None:
    """Aggregate ``values`` with the aggregator called ``name``."""
    return parse_aggregator(name)(values)
