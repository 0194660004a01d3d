"""``wma calibrate simulate``: what the replay's decisions mean for a meeting.

Definitions (per method and over all videos):

* ``tpr_certain``: FAKE share of the certain (not UNCERTAIN) requests of fake videos;
* ``fpr_certain``: FAKE share of the certain requests of real videos;
* ``uncertain``: UNCERTAIN share of all requests;
* ``first_red_s``: median seconds from a fake video's start until its first RED
  banner (requests end every ``frames_per_request / 5`` s), over the fake videos
  that ever showed RED; ``fakes_red`` is the share of fake videos that did;
* ``red_per_real_hour``: RED banners (a banner turning RED) on real videos per
  hour of real participants;
* ``banner_changes_per_min``: banner changes per minute of participants (the
  first banner of a participant is its appearance, not a change).

Rates without a denominator are ``None`` in JSON and ``-`` in the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from wma_core import Banner, Verdict

from wma_calibrators.metrics import fmt, format_table
from wma_calibrators.replay import FRAMES_PER_SECOND, VideoReplay


def _rate(num: float, den: float) -> float | None:
    return num / den if den else None


def group_metrics(replays: Sequence[VideoReplay], frames_per_request: int) -> dict[str, Any]:
    """The metrics above for one group of videos."""
    counts = {(label, v): 0 for label in (0, 1) for v in Verdict}
    first_red: list[float] = []
    fakes = red_onsets = changes = 0
    real_s = total_s = 0.0
    for r in replays:
        label = r.video.label
        seconds = len(r.requests) * frames_per_request / FRAMES_PER_SECOND
        total_s += seconds
        if label == 1:
            fakes += 1
        else:
            real_s += seconds
        previous, seen_red = Banner.NONE, False
        for i, outcome in enumerate(r.requests):
            counts[(label, outcome.verdict)] += 1
            turned_red = outcome.banner is Banner.RED and previous is not Banner.RED
            if turned_red and label == 0:
                red_onsets += 1
            if turned_red and label == 1 and not seen_red:
                first_red.append(outcome.seconds)
                seen_red = True
            if i and outcome.banner is not previous:
                changes += 1
            previous = outcome.banner
    requests = sum(counts.values())

    def certain(label: int) -> int:
        return counts[(label, Verdict.FAKE)] + counts[(label, Verdict.REAL)]

    uncertain = counts[(0, Verdict.UNCERTAIN)] + counts[(1, Verdict.UNCERTAIN)]
    return {
        "videos": len(replays),
        "requests": requests,
        "tpr_certain": _rate(counts[(1, Verdict.FAKE)], certain(1)),
        "fpr_certain": _rate(counts[(0, Verdict.FAKE)], certain(0)),
        "uncertain": _rate(uncertain, requests),
        "first_red_s": float(np.median(first_red)) if first_red else None,
        "fakes_red": _rate(len(first_red), fakes),
        "red_per_real_hour": _rate(red_onsets, real_s / 3600.0),
        "banner_changes_per_min": _rate(changes, total_s / 60.0),
    }


def simulation_report(
    replays: Sequence[VideoReplay], frames_per_request: int
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Metrics over all videos that gave a request, and per method."""
    used = [r for r in replays if r.requests]
    methods = sorted({r.video.method for r in used if r.video.method})
    per_method = {
        m: group_metrics([r for r in used if r.video.method == m], frames_per_request)
        for m in methods
    }
    return group_metrics(used, frames_per_request), per_method


def _cell(value: float | None, percent: bool = False, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt(value, True) if percent else f"{value:.{digits}f}"


def format_simulation(all_: dict[str, Any], methods: dict[str, dict[str, Any]]) -> str:
    """The table printed by ``simulate``."""
    headers = [
        "method",
        "videos",
        "requests",
        "TPR(certain)",
        "FPR(certain)",
        "uncertain",
        "first RED s",
        "fakes RED",
        "RED/real-h",
        "changes/min",
    ]
    rows = []
    for name, m in [("all", all_), *methods.items()]:
        rows.append(
            [
                name,
                str(m["videos"]),
                str(m["requests"]),
                _cell(m["tpr_certain"], True),
                _cell(m["fpr_certain"], True),
                _cell(m["uncertain"], True),
                _cell(m["first_red_s"]),
                _cell(m["fakes_red"], True),
                _cell(m["red_per_real_hour"]),
                _cell(m["banner_changes_per_min"], digits=2),
            ]
        )
    return format_table(headers, rows)
