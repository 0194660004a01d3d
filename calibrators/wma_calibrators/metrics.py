"""Metrics of a calibrated ensemble: AUC, the Youden point and decision rates.

``tpr`` and ``fpr`` are read, like the old project's report, among *certain*
decisions: the share of fakes called FAKE and of reals called FAKE, counting
only videos that were not UNCERTAIN. ``uncertain_rate`` is over all videos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score, roc_curve
from wma_core import Thresholds

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def auc(labels: IntArray, scores: FloatArray) -> float:
    """Area under the ROC curve; NaN when only one label is present."""
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def youden_point(labels: IntArray, scores: FloatArray) -> float:
    """The score threshold that maximises ``TPR - FPR`` (calling ``>= t`` fake)."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    finite = np.isfinite(thresholds)
    j = np.where(finite, tpr - fpr, -np.inf)
    return float(thresholds[int(np.argmax(j))])


@dataclass(frozen=True)
class DecisionMetrics:
    """Counts and rates of the verdicts on one set of videos."""

    n: int
    n_fake: int
    n_real: int
    uncertain_rate: float
    tpr_certain: float
    fpr_certain: float


def _rate(num: int, den: int) -> float:
    return num / den if den else float("nan")


def decision_metrics(
    labels: IntArray, fused: FloatArray, thresholds: Thresholds
) -> DecisionMetrics:
    """Rates at the thresholds (same rule as :func:`wma_core.verdict_for_score`)."""
    fake_call = fused > thresholds.t_high
    real_call = fused < thresholds.t_low
    certain = fake_call | real_call
    is_fake = labels == 1
    return DecisionMetrics(
        n=int(labels.size),
        n_fake=int(is_fake.sum()),
        n_real=int((~is_fake).sum()),
        uncertain_rate=_rate(int((~certain).sum()), int(labels.size)),
        tpr_certain=_rate(int((fake_call & is_fake).sum()), int((certain & is_fake).sum())),
        fpr_certain=_rate(int((fake_call & ~is_fake).sum()), int((certain & ~is_fake).sum())),
    )


def fmt(value: float, percent: bool = False) -> str:
    if np.isnan(value):
        return "-"
    return f"{100 * value:.2f}%" if percent else f"{value:.4f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned text table (first column left-aligned, others right)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def metrics_report(
    labels: IntArray,
    fused: FloatArray,
    model_scores: dict[str, FloatArray],
    thresholds: Thresholds,
    methods: Sequence[str] | None = None,
    fusion_label: str = "noisy-OR",
) -> str:
    """The metrics table printed by ``fit`` and ``report``."""
    auc_rows = [[m, str(labels.size), fmt(auc(labels, s))] for m, s in model_scores.items()]
    auc_rows.append([f"fused ({fusion_label})", str(labels.size), fmt(auc(labels, fused))])
    parts = [format_table(["model", "videos", "AUC"], auc_rows)]
    groups: list[tuple[str, npt.NDArray[np.bool_]]] = [("all", np.ones(labels.size, bool))]
    if methods is not None:
        arr = np.asarray(methods, dtype=object)
        groups += [(str(m), arr == m) for m in sorted(set(methods))]
    rows = []
    for name, mask in groups:
        d = decision_metrics(labels[mask], fused[mask], thresholds)
        rows.append(
            [
                name,
                str(d.n),
                str(d.n_fake),
                str(d.n_real),
                fmt(d.tpr_certain, True),
                fmt(d.fpr_certain, True),
                fmt(d.uncertain_rate, True),
            ]
        )
    headers = ["method", "videos", "fake", "real", "TPR(certain)", "FPR(certain)", "uncertain"]
    parts.append(
        f"thresholds: t_low={thresholds.t_low:.6f} t_high={thresholds.t_high:.6f}\n"
        + format_table(headers, rows)
    )
    return "\n\n".join(parts)
