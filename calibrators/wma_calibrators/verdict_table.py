"""Which verdict a uniform grey frame gets from a bundle with the MOCK models.

The mock model server scores a frame as mean(RGB)/255 plus a per-model bias,
so a batch of grey frames of value ``v`` gives every model the same per-frame
probability; the bundle's own aggregators, calibrators, fusion rule
and thresholds then decide. Demos and gateway tests pick grey levels from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from wma_core import Verdict, decide, fuse, parse_aggregator
from wma_core.bundle import CalibratorBundle


@dataclass(frozen=True)
class GreyLevel:
    value: int
    fused: float
    verdict: Verdict


@dataclass(frozen=True)
class VerdictRange:
    verdict: Verdict
    first: int
    last: int


def grey_levels(
    bundle: CalibratorBundle,
    bias: Mapping[str, float] | None = None,
    frames: int = 10,
) -> list[GreyLevel]:
    """The fused score and verdict for every grey level 0..255."""
    bias = bias or {}
    pools = {model_id: parse_aggregator(cal.aggregator) for model_id, cal in bundle.models.items()}
    ranges = bundle.output_ranges()
    levels = []
    for value in range(256):
        calibrated: dict[str, float | None] = {}
        for model_id, cal in bundle.models.items():
            prob = float(np.clip(value / 255.0 + bias.get(model_id, 0.0), 0.0, 1.0))
            score = pools[model_id](np.full(frames, prob))
            calibrated[model_id] = None if score is None else cal.curve(score)
        fused = fuse(calibrated, ranges, bundle.fusion)
        decision = decide(fused, bundle.thresholds)
        assert fused.score is not None  # every member scored
        levels.append(GreyLevel(value, fused.score, decision.verdict))
    return levels


def verdict_ranges(levels: list[GreyLevel]) -> list[VerdictRange]:
    """Consecutive runs of grey levels with the same verdict."""
    ranges: list[VerdictRange] = []
    for level in levels:
        if ranges and ranges[-1].verdict is level.verdict:
            ranges[-1] = VerdictRange(level.verdict, ranges[-1].first, level.value)
        else:
            ranges.append(VerdictRange(level.verdict, level.value, level.value))
    return ranges


def format_ranges(levels: list[GreyLevel]) -> str:
    """A Markdown table of the grey-level ranges and their fused scores."""
    lines = ["| verdict | grey levels v | width | fused score range |", "|---|---|---|---|"]
    for r in verdict_ranges(levels):
        lo, hi = levels[r.first].fused, levels[r.last].fused
        lines.append(
            f"| {r.verdict.value} | {r.first}..{r.last} | {r.last - r.first + 1} "
            f"| {lo:.6f} .. {hi:.6f} |"
        )
    return "\n".join(lines)
