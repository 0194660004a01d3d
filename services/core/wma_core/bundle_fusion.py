"""The bundle's optional ``fusion`` field: which rule fuses the calibrated scores.

A bundle without the field means noisy-OR, so every bundle written before the
field existed keeps its meaning (and noisy-OR bundles are still written without
it, byte for byte as before). The other rules record their parameters:

* ``{"kind": "noisy_or"}``
* ``{"kind": "sum_logits", "eps": 1e-06}``
* ``{"kind": "stacked", "eps": 1e-06, "bias": -3.2, "weights": {"<model id>": 0.8, ...}}``
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from wma_core import FUSION_KINDS, NOISY_OR, FusionRule
from wma_core.errors import BundleError
from wma_core.fusion_rules import LOGIT_EPS

_FIELDS = {"noisy_or": {"kind"}, "sum_logits": {"kind", "eps"}}
_FIELDS["stacked"] = {"kind", "eps", "bias", "weights"}


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BundleError(where, f"must be a number, got {type(value).__name__}")
    if not math.isfinite(float(value)):
        raise BundleError(where, "must be finite")
    return float(value)


def parse_fusion(raw: object, model_ids: Iterable[str]) -> FusionRule:
    """Validate the ``fusion`` field; ``None`` (absent) is noisy-OR."""
    if raw is None:
        return NOISY_OR
    if not isinstance(raw, dict):
        raise BundleError("fusion", "must be an object")
    kind = raw.get("kind")
    if kind not in FUSION_KINDS:
        raise BundleError("fusion.kind", f"must be one of {', '.join(FUSION_KINDS)}, got {kind!r}")
    unknown = sorted(set(raw) - _FIELDS[str(kind)])
    if unknown:
        raise BundleError(f"fusion.{unknown[0]}", f"unknown field for fusion {kind!r}")
    if kind == "noisy_or":
        return NOISY_OR
    eps = _number(raw.get("eps", LOGIT_EPS), "fusion.eps")
    if not 0.0 < eps < 0.5:
        raise BundleError("fusion.eps", f"must be in (0, 0.5), got {eps!r}")
    if kind == "sum_logits":
        return FusionRule("sum_logits", eps=eps)
    bias = _number(raw.get("bias"), "fusion.bias")
    weights_raw = raw.get("weights")
    if not isinstance(weights_raw, dict):
        raise BundleError("fusion.weights", "must be an object {model_id: weight}")
    ids = list(model_ids)
    for model_id in ids:
        if model_id not in weights_raw:
            raise BundleError(f"fusion.weights.{model_id}", "missing (one weight per model)")
    weights: dict[str, float] = {}
    for model_id, value in weights_raw.items():
        where = f"fusion.weights.{model_id}"
        if model_id not in ids:
            raise BundleError(where, "names a model that the bundle has no calibrator for")
        weights[model_id] = _number(value, where)
        if weights[model_id] < 0:
            raise BundleError(where, "must be >= 0 (the fusion must not decrease in any member)")
    return FusionRule("stacked", weights={m: weights[m] for m in ids}, bias=bias, eps=eps)


def fusion_document(rule: FusionRule) -> dict[str, Any] | None:
    """The ``fusion`` field of a rule; None for noisy-OR (the field is left out)."""
    if rule.kind == "noisy_or":
        return None
    doc: dict[str, Any] = {"kind": rule.kind, "eps": rule.eps}
    if rule.kind == "stacked":
        doc["bias"] = rule.bias
        doc["weights"] = dict(rule.weights)
    return doc


def describe_fusion(rule: FusionRule) -> str:
    """One line for ``verify`` and ``report``: the rule and its parameters."""
    if rule.kind == "noisy_or":
        return "fusion noisy_or: 1 - prod(1 - p)"
    if rule.kind == "sum_logits":
        return f"fusion sum_logits: sigmoid(sum(logit(clip(p, {rule.eps:g}, 1 - {rule.eps:g}))))"
    weights = ", ".join(f"{m}={w:.6g}" for m, w in rule.weights.items())
    return (
        f"fusion stacked: sigmoid({rule.bias:.6g} + sum(w * logit(clip(p, {rule.eps:g}, "
        f"1 - {rule.eps:g})))), weights {weights}"
    )
