"""The plan's rollout gates, judged on a :class:`~wma_calibrators.rollout.report.Report`.

Each gate holds, fails, or is not evaluated (no data for it). The uncertain-rate
gate accepts the ensemble's UNCERTAIN share within a tolerance band around the
2 % the thresholds were sized for (default ``[1 %, 4 %]``); the accuracy gate
compares accuracy on certain decisions and needs labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wma_calibrators.rollout.report import Report

AGREEMENT_MIN = 0.90
UNCERTAIN_BAND = (0.01, 0.04)


class GateStatus(StrEnum):
    HOLDS = "holds"
    FAILS = "fails"
    NOT_EVALUATED = "not evaluated"


@dataclass(frozen=True)
class Gate:
    name: str
    status: GateStatus
    detail: str


def _judge(ok: bool | None) -> GateStatus:
    if ok is None:
        return GateStatus.NOT_EVALUATED
    return GateStatus.HOLDS if ok else GateStatus.FAILS


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def judge_gates(
    report: Report,
    *,
    agreement_min: float = AGREEMENT_MIN,
    uncertain_band: tuple[float, float] = UNCERTAIN_BAND,
) -> list[Gate]:
    leg, ens = report.paths["legacy"], report.paths["ensemble"]
    agreement = report.agreement
    p95 = ens.latency_p95
    errors = leg.errors + ens.errors
    unc = ens.uncertain_rate
    lo, hi = uncertain_band
    better: bool | None = None
    if ens.accuracy is not None and leg.accuracy is not None:
        better = ens.accuracy > leg.accuracy
    return [
        Gate(
            f"verdict agreement >= {100 * agreement_min:.0f} %",
            _judge(None if agreement is None else agreement >= agreement_min),
            f"{pct(agreement)} over {report.compared} compared requests",
        ),
        Gate(
            f"ensemble latency p95 < {report.slo_ms:.0f} ms",
            _judge(None if p95 is None else p95 < report.slo_ms),
            "n/a" if p95 is None else f"p95 {p95:.1f} ms, {ens.slo_breaches} SLO breaches",
        ),
        Gate(
            "no errors",
            _judge(None if report.records == 0 else errors == 0),
            f"legacy {leg.errors}, ensemble {ens.errors} failed runs"
            f" ({ens.degraded} degraded ensemble answers)",
        ),
        Gate(
            f"uncertain rate near 2 % (within [{100 * lo:g} %, {100 * hi:g} %])",
            _judge(None if unc is None else lo <= unc <= hi),
            f"ensemble {pct(unc)} of {ens.decided} decisions",
        ),
        Gate(
            "accuracy better than the single model",
            _judge(better),
            "needs a labels file"
            if not report.labels_used
            else f"accuracy on certain decisions: ensemble {pct(ens.accuracy)}, "
            f"legacy {pct(leg.accuracy)} ({ens.labelled} labelled)",
        ),
    ]
