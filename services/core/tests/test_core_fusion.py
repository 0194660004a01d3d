"""Noisy-OR, verdicts, confidence labels, banners and the degraded interval rule."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from wma_core import (
    Banner,
    Confidence,
    Thresholds,
    Verdict,
    banner_for,
    confidence_label,
    decide,
    fuse,
    is_degraded,
    noisy_or,
    verdict_for_score,
)

prob = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_subnormal=False)
DEFAULT = Thresholds()


@st.composite
def thresholds(draw: st.DrawFn) -> Thresholds:
    a = draw(st.floats(min_value=1e-6, max_value=1 - 1e-6))
    b = draw(st.floats(min_value=1e-6, max_value=1 - 1e-6))
    if a == b:
        b = a + (1e-7 if a < 0.5 else -1e-7)
    return Thresholds(min(a, b), max(a, b))


def reference_noisy_or(p: list[float]) -> float:
    out = 1.0
    for v in p:
        out *= 1.0 - v
    return 1.0 - out


def reference_verdict(score: float, t: Thresholds) -> Verdict:
    if score < t.t_low:
        return Verdict.REAL
    if score > t.t_high:
        return Verdict.FAKE
    return Verdict.UNCERTAIN


def reference_confidence(verdict: Verdict, score: float, t: Thresholds) -> Confidence:
    if verdict is Verdict.UNCERTAIN:
        return Confidence.UNCERTAIN
    if verdict is Verdict.REAL:
        if score < 0.5 * t.t_low:
            return Confidence.HIGH
        return Confidence.MEDIUM if score < 0.75 * t.t_low else Confidence.LOW
    r = (score - t.t_high) / (1 - t.t_high)
    if r < 0.33:
        return Confidence.LOW
    return Confidence.MEDIUM if r < 0.67 else Confidence.HIGH


@given(st.lists(prob, max_size=8))
def test_noisy_or_is_one_minus_the_product_of_complements(p: list[float]) -> None:
    assert noisy_or(p) == pytest.approx(reference_noisy_or(p), abs=1e-15)


@given(st.lists(prob, min_size=1, max_size=6), st.integers(min_value=0, max_value=5), prob)
def test_noisy_or_never_decreases_when_one_input_grows(p: list[float], i: int, v: float) -> None:
    i %= len(p)
    higher = list(p)
    higher[i] = max(p[i], v)
    assert noisy_or(higher) >= noisy_or(p)


@given(prob, thresholds())
def test_verdict_and_confidence_follow_the_old_client(score: float, t: Thresholds) -> None:
    verdict = verdict_for_score(score, t)
    assert verdict is reference_verdict(score, t)
    assert confidence_label(verdict, score, t) is reference_confidence(verdict, score, t)


@pytest.mark.parametrize(
    ("score", "verdict", "confidence"),
    [
        (0.0, Verdict.REAL, Confidence.HIGH),
        (0.4984, Verdict.REAL, Confidence.MEDIUM),  # just above 0.5 * T_low = 0.49835
        (0.7476, Verdict.REAL, Confidence.LOW),  # 0.75 * T_low = 0.747525
        (0.9966999, Verdict.REAL, Confidence.LOW),
        (0.996700, Verdict.UNCERTAIN, Confidence.UNCERTAIN),  # the band is closed
        (0.998248, Verdict.UNCERTAIN, Confidence.UNCERTAIN),
        (0.9983, Verdict.FAKE, Confidence.LOW),
        (0.99895, Verdict.FAKE, Confidence.MEDIUM),  # r ~ 0.40
        (0.9999, Verdict.FAKE, Confidence.HIGH),
    ],
)
def test_default_thresholds_decide_like_reference_section_2(
    score: float, verdict: Verdict, confidence: Confidence
) -> None:
    assert DEFAULT.t_low == 0.996700 and DEFAULT.t_high == 0.998248
    assert verdict_for_score(score, DEFAULT) is verdict
    assert confidence_label(verdict, score, DEFAULT) is confidence


def test_banners_follow_the_verdict() -> None:
    assert banner_for(Verdict.FAKE) is Banner.RED
    assert banner_for(Verdict.UNCERTAIN) is Banner.YELLOW
    assert banner_for(Verdict.REAL) is Banner.GREEN
    assert banner_for(Verdict.NO_FACE) is Banner.NONE


@pytest.mark.parametrize(("t_low", "t_high"), [(0.5, 0.5), (0.6, 0.4), (0.0, 0.5), (0.5, 1.0)])
def test_thresholds_out_of_order_or_range_are_refused(t_low: float, t_high: float) -> None:
    with pytest.raises(ValueError, match="0 < t_low < t_high < 1"):
        Thresholds(t_low, t_high)


MODELS = ("9rfa62j1", "1mjgo9w1", "dfsesrgu", "4vtny88m")


@st.composite
def ranges(draw: st.DrawFn) -> dict[str, tuple[float, float]]:
    out = {}
    for m in MODELS:
        a, b = draw(prob), draw(prob)
        out[m] = (min(a, b), max(a, b))
    return out


@settings(max_examples=300)
@given(st.lists(prob, min_size=4, max_size=4), thresholds())
def test_all_members_present_decides_on_the_exact_noisy_or(
    scores: list[float], t: Thresholds
) -> None:
    fused = fuse(dict(zip(MODELS, scores, strict=True)), {})
    expected = reference_noisy_or(scores)
    assert fused.score is not None
    assert fused.score == pytest.approx(expected, abs=1e-15)
    assert fused.interval == (fused.score, fused.score) and not is_degraded(fused, any_failed=False)
    decision = decide(fused, t)
    assert decision.verdict is reference_verdict(fused.score, t)
    assert decision.confidence is reference_confidence(decision.verdict, fused.score, t)
    assert decision.banner is banner_for(decision.verdict)


@settings(max_examples=300)
@given(
    scores=st.lists(prob, min_size=4, max_size=4),
    missing=st.sets(st.sampled_from(MODELS), min_size=1, max_size=3),
    out_ranges=ranges(),
    t=thresholds(),
    fill=st.lists(prob, min_size=4, max_size=4),
)
def test_missing_members_only_allow_a_verdict_every_completion_agrees_on(
    scores: list[float],
    missing: set[str],
    out_ranges: dict[str, tuple[float, float]],
    t: Thresholds,
    fill: list[float],
) -> None:
    calibrated: dict[str, float | None] = {
        m: (None if m in missing else s) for m, s in zip(MODELS, scores, strict=True)
    }
    fused = fuse(calibrated, out_ranges)
    assert fused.score is None and fused.missing == tuple(m for m in MODELS if m in missing)
    lows = [out_ranges[m][0] if v is None else v for m, v in calibrated.items()]
    highs = [out_ranges[m][1] if v is None else v for m, v in calibrated.items()]
    lo, hi = reference_noisy_or(lows), reference_noisy_or(highs)
    assert fused.interval == pytest.approx((lo, hi), abs=1e-15)
    assume(min(abs(v - w) for v in (lo, hi) for w in (t.t_low, t.t_high)) > 1e-12)
    decision = decide(fused, t)
    if lo > t.t_high:
        assert decision.verdict is Verdict.FAKE
        assert decision.confidence is reference_confidence(Verdict.FAKE, lo, t)
    elif hi < t.t_low:
        assert decision.verdict is Verdict.REAL
        assert decision.confidence is reference_confidence(Verdict.REAL, hi, t)
    else:
        assert decision.verdict is Verdict.UNCERTAIN
    # Soundness: any values the missing members could have had give the same verdict.
    if decision.verdict is not Verdict.UNCERTAIN:
        for low_end, high_end, f in ((True, False, 0.0), (False, True, 0.0), (False, False, 1)):
            completion = []
            for (m, v), u in zip(calibrated.items(), fill, strict=True):
                a, b = out_ranges[m]
                pick = a if low_end else b if high_end else a + (b - a) * u * f
                completion.append(pick if v is None else v)
            full = reference_noisy_or(completion)
            assert reference_verdict(full, t) is decision.verdict


@given(a=prob, b=prob, c=prob, t=thresholds())
def test_present_members_that_already_prove_fake_decide_fake_whatever_is_missing(
    a: float, b: float, c: float, t: Thresholds
) -> None:
    present = reference_noisy_or([a, b, c])
    assume(abs(present - t.t_high) > 1e-12)  # rounding order is not part of the rule
    calibrated = {"9rfa62j1": a, "1mjgo9w1": b, "dfsesrgu": c, "4vtny88m": None}
    decision = decide(fuse(calibrated, {"4vtny88m": (0.0, 1.0)}), t)
    if present > t.t_high:
        assert decision.verdict is Verdict.FAKE and decision.banner is Banner.RED
    else:
        # Missing member could push the score to 1: never REAL, at most UNCERTAIN.
        assert decision.verdict is Verdict.UNCERTAIN


def test_one_missing_member_with_strong_fakes_present_is_fake() -> None:
    calibrated = {"9rfa62j1": 0.9999, "1mjgo9w1": 0.99, "dfsesrgu": 0.5, "4vtny88m": None}
    decision = decide(fuse(calibrated, {"4vtny88m": (0.0, 1.0)}), DEFAULT)
    assert (decision.verdict, decision.banner) == (Verdict.FAKE, Banner.RED)


def test_one_missing_member_blocks_a_real_verdict_it_could_overturn() -> None:
    calibrated = {"9rfa62j1": 0.01, "1mjgo9w1": 0.02, "dfsesrgu": 0.01, "4vtny88m": None}
    decision = decide(fuse(calibrated, {"4vtny88m": (0.0, 1.0)}), DEFAULT)
    assert (decision.verdict, decision.banner) == (Verdict.UNCERTAIN, Banner.YELLOW)
    # A missing member whose calibrator tops out low cannot overturn REAL.
    decision = decide(fuse(calibrated, {"4vtny88m": (0.0, 0.3)}), DEFAULT)
    assert (decision.verdict, decision.banner) == (Verdict.REAL, Banner.GREEN)


def test_all_members_missing_is_no_face_never_real() -> None:
    calibrated: dict[str, float | None] = dict.fromkeys(MODELS)
    fused = fuse(calibrated, dict.fromkeys(MODELS, (0.0, 1.0)))
    assert fused.present == 0
    decision = decide(fused, DEFAULT)
    assert decision.verdict is Verdict.NO_FACE
    assert decision.confidence is Confidence.NONE and decision.banner is Banner.NONE


def test_missing_member_without_a_known_output_range_is_an_error() -> None:
    with pytest.raises(KeyError, match="4vtny88m"):
        fuse({"9rfa62j1": 0.5, "4vtny88m": None}, {})


def test_noisy_or_of_nothing_is_zero() -> None:
    assert noisy_or([]) == 0.0 and math.isclose(noisy_or([0.5, 0.5]), 0.75)
