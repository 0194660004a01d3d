"""What the ensemble must answer for grey frames, computed by the core, and the check of an answer.

The mock backend scores a frame of grey ``v`` as ``float32(clip(v / 255 + bias, 0, 1))``;
:class:`Oracle` aggregates, calibrates, fuses and decides those scores with
:mod:`wma_core` and the gateway's bundle, exactly as the gateway should. For a
degraded answer (some members failed) it recomputes the decision from the members
the answer says scored, missing members bounded by the interval rule
(:func:`wma_core.fuse`), and also checks that the verdict is one the full ensemble
could give: a degraded FAKE or REAL must be the full ensemble's verdict too
(UNCERTAIN is always allowed). :meth:`Oracle.check` returns what is wrong, or None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from wma_core import Decision, FusedScore, Verdict, decide, fuse, is_degraded, parse_aggregator
from wma_core.bundle import CalibratorBundle

__all__ = ["Oracle"]

TOLERANCE = 1e-9
FAILED = {"timeout", "error", "circuit_open"}


def _close(a: object, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return isinstance(a, int | float) and math.isclose(float(a), b, abs_tol=TOLERANCE)


class Oracle:
    def __init__(self, bundle: CalibratorBundle, biases: Mapping[str, float]) -> None:
        self.bundle = bundle
        self.biases = dict(biases)
        self.aggregators = {m: parse_aggregator(c.aggregator) for m, c in bundle.models.items()}

    def calibrated(self, levels: tuple[int, ...]) -> dict[str, float]:
        """Each member's calibrated score for frames of these grey levels."""
        out = {}
        for mid, cal in self.bundle.models.items():
            bias = self.biases.get(mid, 0.0)
            probs = [float(np.float32(np.clip(v / 255.0 + bias, 0.0, 1.0))) for v in levels]
            agg = self.aggregators[mid](probs)
            assert agg is not None  # every frame is scored
            out[mid] = cal.curve(agg)
        return out

    def fused(self, levels: tuple[int, ...], present: set[str] | None = None) -> FusedScore:
        """The fused score (an interval when ``present`` leaves members out)."""
        scores = self.calibrated(levels)
        some: dict[str, float | None] = {
            m: (s if present is None or m in present else None) for m, s in scores.items()
        }
        return fuse(some, self.bundle.output_ranges(), self.bundle.fusion)

    def decision(self, levels: tuple[int, ...], present: set[str] | None = None) -> Decision:
        return decide(self.fused(levels, present), self.bundle.thresholds)

    def check(self, body: Any, levels: tuple[int, ...]) -> str | None:
        """What is wrong with a 200 answer to frames of ``levels``; None if it is right."""
        if not isinstance(body, dict) or not isinstance(body.get("models"), dict):
            return "not an analyze answer"
        models: dict[str, Any] = body["models"]
        if set(models) != set(self.bundle.models):
            return f"members {sorted(models)}, expected {sorted(self.bundle.models)}"
        statuses = {m: v.get("status") for m, v in models.items()}
        unknown = {s for s in statuses.values() if s != "ok" and s not in FAILED}
        if unknown:
            return f"member statuses {sorted(map(str, unknown))} for frames that all decode"
        present = {m for m, s in statuses.items() if s == "ok"}
        scores = self.calibrated(levels)
        for mid in present:
            if not _close(models[mid].get("calibrated"), scores[mid]):
                return f"{mid} calibrated {models[mid].get('calibrated')}, core says {scores[mid]}"
        fused = self.fused(levels, present)
        want = decide(fused, self.bundle.thresholds)
        full = self.decision(levels)
        degraded = is_degraded(fused, any_failed=len(present) < len(models))
        got = (body.get("verdict"), body.get("banner"), body.get("confidence"))
        if got != (want.verdict.value, want.banner.value, want.confidence.value):
            return f"answer {got}, core says {want.verdict}/{want.banner}/{want.confidence}"
        if want.verdict not in (full.verdict, Verdict.UNCERTAIN):
            return f"interval rule: degraded {want.verdict}, full ensemble {full.verdict}"
        if body.get("degraded") is not degraded:
            return f"degraded={body.get('degraded')}, expected {degraded}"
        interval = body.get("fusion_interval") or [None, None]
        if not (_close(interval[0], fused.interval[0]) and _close(interval[1], fused.interval[1])):
            return f"fusion_interval {interval}, core says {list(fused.interval)}"
        if not _close(body.get("fusion_score"), fused.score):
            return f"fusion_score {body.get('fusion_score')}, core says {fused.score}"
        return None
