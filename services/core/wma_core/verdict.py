"""Verdicts, confidence labels and banners: the decisions a user sees.

The rules match the old meeting client with one
deliberate change: an answer in which no model scored any frame is
``NO_FACE`` with banner ``NONE``, never ``REAL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wma_core.fusion import FusedScore

T_LOW_DEFAULT = 0.996700
T_HIGH_DEFAULT = 0.998248


class Verdict(StrEnum):
    REAL = "REAL"
    UNCERTAIN = "UNCERTAIN"
    FAKE = "FAKE"
    NO_FACE = "NO_FACE"


class Confidence(StrEnum):
    HIGH = "High"
    MEDIUM = "Medium"
    LOW = "Low"
    UNCERTAIN = "Uncertain"
    NONE = "None"


class Banner(StrEnum):
    NONE = "NONE"
    GREEN = "GREEN"
    YELLOW = "YELLOW"
    RED = "RED"


BANNER_RANK: dict[Banner, int] = {Banner.NONE: 0, Banner.GREEN: 1, Banner.YELLOW: 2, Banner.RED: 3}


@dataclass(frozen=True)
class Thresholds:
    """The two thresholds on the fused score, ``0 < t_low < t_high < 1``."""

    t_low: float = T_LOW_DEFAULT
    t_high: float = T_HIGH_DEFAULT

    def __post_init__(self) -> None:
        if not (0.0 < self.t_low < self.t_high < 1.0):
            raise ValueError(
                f"thresholds must satisfy 0 < t_low < t_high < 1, got "
                f"t_low={self.t_low!r}, t_high={self.t_high!r}"
            )


def verdict_for_score(score: float, thresholds: Thresholds) -> Verdict:
    """``score < t_low`` -> REAL, ``score > t_high`` -> FAKE, else UNCERTAIN."""
    return verdict_for_interval(score, score, thresholds)


def verdict_for_interval(lo: float, hi: float, thresholds: Thresholds) -> Verdict:
    """FAKE if even the lowest possible score is above ``t_high``; REAL if even
    the highest is below ``t_low``; otherwise UNCERTAIN."""
    if lo > thresholds.t_high:
        return Verdict.FAKE
    if hi < thresholds.t_low:
        return Verdict.REAL
    return Verdict.UNCERTAIN


def confidence_label(verdict: Verdict, score: float, thresholds: Thresholds) -> Confidence:
    """The old client's confidence label for a decided ``score``."""
    if verdict is Verdict.REAL:
        if score < 0.5 * thresholds.t_low:
            return Confidence.HIGH
        if score < 0.75 * thresholds.t_low:
            return Confidence.MEDIUM
        return Confidence.LOW
    if verdict is Verdict.FAKE:
        r = (score - thresholds.t_high) / (1.0 - thresholds.t_high)
        if r < 0.33:
            return Confidence.LOW
        if r < 0.67:
            return Confidence.MEDIUM
        return Confidence.HIGH
    if verdict is Verdict.UNCERTAIN:
        return Confidence.UNCERTAIN
    return Confidence.NONE


def banner_for(verdict: Verdict) -> Banner:
    """FAKE -> RED, UNCERTAIN -> YELLOW, REAL -> GREEN, NO_FACE -> NONE."""
    return {
        Verdict.FAKE: Banner.RED,
        Verdict.UNCERTAIN: Banner.YELLOW,
        Verdict.REAL: Banner.GREEN,
        Verdict.NO_FACE: Banner.NONE,
    }[verdict]


@dataclass(frozen=True)
class Decision:
    """The verdict, its confidence label and banner for one fused result."""

    verdict: Verdict
    confidence: Confidence
    banner: Banner


def decide(fused: FusedScore, thresholds: Thresholds) -> Decision:
    """Decide on a (possibly degraded) fused score.

    The confidence of a degraded decision is read at the bound that decided it
    (the lower bound for FAKE, the upper bound for REAL), so it never claims
    more than the missing members allow.
    """
    if fused.present == 0:
        return Decision(Verdict.NO_FACE, Confidence.NONE, Banner.NONE)
    lo, hi = fused.interval
    verdict = verdict_for_interval(lo, hi, thresholds)
    deciding = lo if verdict is Verdict.FAKE else hi
    return Decision(verdict, confidence_label(verdict, deciding, thresholds), banner_for(verdict))


def legacy_banner(mean_prob: float, threshold: float = 0.75, margin: float = 0.05) -> Banner:
    """The old single-model banding: RED at ``>= thr + margin``, YELLOW at
    ``>= thr - margin``, else GREEN."""
    if mean_prob >= threshold + margin:
        return Banner.RED
    if mean_prob >= threshold - margin:
        return Banner.YELLOW
    return Banner.GREEN
