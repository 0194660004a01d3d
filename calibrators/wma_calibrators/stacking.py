"""The stacked fusion's fit: logistic regression with non-negative weights.

The features are the members' calibrated scores as logits (the core's
:func:`wma_core.logit`, clipped to ``[eps, 1 - eps]``); the weights are held
``>= 0`` so the fused score never decreases when a member's score rises (the
interval rule for missing members depends on it); the bias is free. Like
scikit-learn's default ``LogisticRegression(C=1.0)``, the weights (not the bias)
carry an L2 penalty ``0.5 * |w|^2`` next to the summed log-loss, which keeps
them finite on separable data. Solved by projected Newton steps with a
backtracking line search (the problem is convex, with a handful of unknowns).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from wma_core import FusionRule, logit
from wma_core.fusion_rules import LOGIT_EPS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_MAX_STEPS = 200
_TOL = 1e-10


def _loss(theta: FloatArray, x: FloatArray, y: FloatArray, c: float) -> float:
    u = x @ theta
    w = theta[:-1]
    return float(0.5 * w @ w + c * np.sum(np.logaddexp(0.0, u) - y * u))


def fit_nonnegative_logistic(
    features: FloatArray, labels: IntArray, c: float = 1.0
) -> tuple[FloatArray, float]:
    """Weights ``>= 0`` and a bias minimising ``0.5 |w|^2 + c * log-loss``."""
    n, m = features.shape
    x = np.column_stack([features, np.ones(n)])
    y = labels.astype(np.float64)
    theta = np.zeros(m + 1)
    penalty = np.append(np.ones(m), 0.0)
    for _ in range(_MAX_STEPS):
        p = 1.0 / (1.0 + np.exp(-(x @ theta)))
        grad = penalty * theta + c * x.T @ (p - y)
        hess = c * (x.T * (p * (1.0 - p))) @ x + np.diag(penalty + 1e-9)
        free = np.ones(m + 1, dtype=bool)
        free[:m] = ~((theta[:m] <= 0.0) & (grad[:m] > 0.0))
        step = np.zeros(m + 1)
        step[free] = -np.linalg.solve(hess[np.ix_(free, free)], grad[free])
        before, t = _loss(theta, x, y, c), 1.0
        while True:
            trial = theta + t * step
            trial[:m] = np.maximum(trial[:m], 0.0)
            if _loss(trial, x, y, c) <= before + 1e-4 * grad @ (trial - theta) or t < 1e-12:
                break
            t *= 0.5
        moved = float(np.max(np.abs(trial - theta)))
        theta = trial
        if moved < _TOL:
            break
    return theta[:m].copy(), float(theta[m])


def fit_stacked(
    calibrated: Mapping[str, FloatArray], labels: IntArray, eps: float = LOGIT_EPS
) -> FusionRule:
    """The stacked rule fitted on ``calibrated`` (per model, one score per video)."""
    ids = list(calibrated)
    z = np.column_stack([logit(calibrated[m], eps) for m in ids])
    weights, bias = fit_nonnegative_logistic(z, labels)
    return FusionRule("stacked", weights=dict(zip(ids, weights.tolist(), strict=True)), bias=bias)
