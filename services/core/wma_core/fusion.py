"""Fusion of calibrated member scores, including the degradation-aware interval rule.

When some members gave no score (failed, timed out or scored no frame), the
fused score is unknown but bounded: every fusion rule is monotone
non-decreasing in every input (:mod:`wma_core.fusion_rules`), so putting each
missing member at the minimum and at the maximum of its calibrator's output
range gives the lowest and highest fused score the full ensemble could have
produced. The verdict is then decided on that interval (see
:func:`wma_core.verdict.decide`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wma_core.fusion_rules import NOISY_OR, FusionRule, noisy_or

__all__ = ["FusedScore", "fuse", "is_degraded", "noisy_or"]


@dataclass(frozen=True)
class FusedScore:
    """The fused score of the members that scored, bounded for those that did not.

    ``score`` is the exact fused score when no member is missing, else ``None``;
    ``interval`` always holds ``(lo, hi)``, equal to ``(score, score)`` when exact.
    ``present`` is the number of members that contributed a score.
    """

    score: float | None
    interval: tuple[float, float]
    missing: tuple[str, ...]
    present: int


def is_degraded(fused: FusedScore, *, any_failed: bool) -> bool:
    """Whether an answer is degraded: a member failed (``any_failed``), or some
    members scored while others did not (the verdict rests on an interval).

    No member scoring at all (no face in any frame) is an answer, not a degraded one.
    """
    return any_failed or (fused.present > 0 and bool(fused.missing))


def fuse(
    calibrated: Mapping[str, float | None],
    output_ranges: Mapping[str, tuple[float, float]],
    rule: FusionRule = NOISY_OR,
) -> FusedScore:
    """Fuse calibrated per-model scores with ``rule``; ``None`` marks a member
    without a score.

    ``output_ranges`` gives, for every member, the ``(min, max)`` its calibrator
    can return; it is read only for missing members.
    """
    present = {m: float(v) for m, v in calibrated.items() if v is not None}
    missing = tuple(k for k, v in calibrated.items() if v is None)
    for model_id in missing:
        if model_id not in output_ranges:
            raise KeyError(f"no calibrator output range for missing model {model_id!r}")
    if not calibrated:
        lo = hi = 0.0
    else:
        # Present members first, then the missing ones (the historical order of the product).
        lows = present | {m: output_ranges[m][0] for m in missing}
        highs = present | {m: output_ranges[m][1] for m in missing}
        lo, hi = rule.combine(lows), rule.combine(highs)
    score = lo if not missing else None
    return FusedScore(score=score, interval=(lo, hi), missing=missing, present=len(present))
