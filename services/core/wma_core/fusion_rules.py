"""The fusion rules a bundle can name: noisy-OR, sum of logits, stacked logits.

Each rule maps the calibrated per-model scores of one request to one fused
score. All three are non-decreasing in every member (the stacked weights are
non-negative), which is what lets :func:`wma_core.fusion.fuse` bound the fused
score of a request with missing members by the ends of their output ranges.

* ``noisy_or``: ``1 - prod(1 - p_i)``.
* ``sum_logits``: ``sigmoid(sum(logit(clip(p_i, eps, 1 - eps))))``.
* ``stacked``: ``sigmoid(bias + sum(w_i * logit(clip(p_i, eps, 1 - eps))))``,
  ``w_i >= 0``, one weight per model id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

FUSION_KINDS = ("noisy_or", "sum_logits", "stacked")
LOGIT_EPS = 1e-6


def noisy_or(probs: npt.ArrayLike) -> float:
    """``1 - prod(1 - p_i)``; an empty input fuses to 0."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    return float(1.0 - np.prod(1.0 - p))


def logit(probs: npt.ArrayLike, eps: float = LOGIT_EPS) -> FloatArray:
    """``log(p / (1 - p))`` of ``p`` clipped to ``[eps, 1 - eps]``."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    out: FloatArray = np.log(p) - np.log1p(-p)
    return out


def sigmoid(z: npt.ArrayLike) -> FloatArray:
    """``1 / (1 + exp(-z))``, without overflow for large ``|z|``."""
    x = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(x))
    out: FloatArray = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return out


@dataclass(frozen=True)
class FusionRule:
    """A fusion rule and its parameters (``weights``/``bias`` only for ``stacked``)."""

    kind: str = "noisy_or"
    weights: Mapping[str, float] = field(default_factory=dict)
    bias: float = 0.0
    eps: float = LOGIT_EPS

    def __post_init__(self) -> None:
        if self.kind not in FUSION_KINDS:
            raise ValueError(f"unknown fusion {self.kind!r}; valid: {', '.join(FUSION_KINDS)}")
        if not 0.0 < self.eps < 0.5:
            raise ValueError(f"fusion eps must be in (0, 0.5), got {self.eps!r}")
        if self.kind == "stacked":
            if not self.weights:
                raise ValueError("a stacked fusion needs one weight per model")
            bad = [m for m, w in self.weights.items() if not (np.isfinite(w) and w >= 0.0)]
            if bad:
                raise ValueError(f"stacked weight of {bad[0]!r} must be finite and >= 0")
            if not np.isfinite(self.bias):
                raise ValueError("stacked bias must be finite")
        elif self.weights or self.bias:
            raise ValueError(f"fusion {self.kind!r} takes no weights or bias")

    @property
    def label(self) -> str:
        """A short name for tables: ``noisy-OR``, ``sum-logits``, ``stacked``."""
        return {"noisy_or": "noisy-OR", "sum_logits": "sum-logits", "stacked": "stacked"}[self.kind]

    def combine_rows(self, calibrated: Mapping[str, npt.ArrayLike]) -> FloatArray:
        """The fused score of every row: ``calibrated`` maps model ids to equal-length
        columns of calibrated scores."""
        ids = list(calibrated)
        if not ids:
            raise ValueError("nothing to fuse")
        cols = np.column_stack([np.asarray(calibrated[m], dtype=np.float64) for m in ids])
        if self.kind == "noisy_or":
            out: FloatArray = 1.0 - np.prod(1.0 - cols, axis=1)
            return out
        z = logit(cols, self.eps)
        if self.kind == "sum_logits":
            return sigmoid(z.sum(axis=1))
        missing = [m for m in ids if m not in self.weights]
        if missing:
            raise KeyError(f"stacked fusion has no weight for model {missing[0]!r}")
        w = np.array([self.weights[m] for m in ids], dtype=np.float64)
        return sigmoid(self.bias + z @ w)

    def combine(self, calibrated: Mapping[str, float]) -> float:
        """The fused score of one request (every model present)."""
        if self.kind == "noisy_or":  # the historical scalar path, bit for bit
            return noisy_or(list(calibrated.values()))
        return float(self.combine_rows({m: [v] for m, v in calibrated.items()})[0])


NOISY_OR = FusionRule()
