"""Fitting and comparing the three fusions on out-of-fold calibrated scores.

Every fusion is judged on scores that never saw the video: the members'
calibrated scores are out of fold already, and the stacked fusion's weights
are fitted out of fold too (on the other folds' videos, same folds as the
calibrators), so its scores for thresholds and metrics are as honest as the
others'. Each fusion gets its own Youden centre and UNCERTAIN band. The
exported stacked rule is then fitted on every video's out-of-fold scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import StratifiedKFold
from wma_core import FUSION_KINDS, NOISY_OR, FusionRule, Thresholds, noisy_or

from wma_calibrators.errors import CalibrateError
from wma_calibrators.metrics import auc, decision_metrics, fmt, format_table, youden_point
from wma_calibrators.stacking import fit_stacked
from wma_calibrators.thresholds import choose_band

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def fuse_rows(calibrated: Mapping[str, FloatArray], rule: FusionRule = NOISY_OR) -> FloatArray:
    """Each video's fused score (the core's rule)."""
    if rule.kind != "noisy_or":
        return rule.combine_rows(calibrated)
    # Row by row through the scalar noisy-OR: the numbers bundles were always fitted on.
    matrix = np.column_stack([np.asarray(v, dtype=np.float64) for v in calibrated.values()])
    return np.fromiter((noisy_or(row) for row in matrix), dtype=np.float64, count=len(matrix))


@dataclass(frozen=True)
class FusionFit:
    """One fusion: its exported rule, out-of-fold fused scores and its own band."""

    rule: FusionRule
    oof: FloatArray
    centre: float
    thresholds: Thresholds | None
    problem: str | None = None


def _stacked_oof(
    calibrated: Mapping[str, FloatArray], labels: IntArray, k: int, seed: int
) -> FloatArray:
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    out = np.empty(labels.size)
    for train, test in folds.split(np.zeros(labels.size), labels):
        rule = fit_stacked({m: v[train] for m, v in calibrated.items()}, labels[train])
        out[test] = rule.combine_rows({m: v[test] for m, v in calibrated.items()})
    return out


def fit_fusion(
    kind: str,
    calibrated: Mapping[str, FloatArray],
    labels: IntArray,
    *,
    k: int,
    seed: int,
    uncertain_rate: float,
) -> FusionFit:
    """Fit ``kind`` on out-of-fold calibrated scores and place its band."""
    if kind == "stacked":
        rule = fit_stacked(calibrated, labels)
        oof = _stacked_oof(calibrated, labels, k, seed)
    else:
        rule = NOISY_OR if kind == "noisy_or" else FusionRule(kind)
        oof = fuse_rows(calibrated, rule)
    centre = youden_point(labels, oof)
    try:
        thresholds = choose_band(oof, centre, uncertain_rate)
    except CalibrateError as exc:
        return FusionFit(rule, oof, centre, None, str(exc))
    return FusionFit(rule, oof, centre, thresholds)


def fit_all(
    calibrated: Mapping[str, FloatArray],
    labels: IntArray,
    *,
    k: int,
    seed: int,
    uncertain_rate: float,
) -> dict[str, FusionFit]:
    """All three fusions, in the order of :data:`wma_core.FUSION_KINDS`."""
    return {
        kind: fit_fusion(kind, calibrated, labels, k=k, seed=seed, uncertain_rate=uncertain_rate)
        for kind in FUSION_KINDS
    }


def comparison_table(labels: IntArray, fits: Mapping[str, FusionFit], chosen: str) -> str:
    """The fusions side by side, each at its own out-of-fold thresholds."""
    rows = []
    for kind, fit in fits.items():
        cells = [f"{kind}{' *' if kind == chosen else ''}", fmt(auc(labels, fit.oof))]
        if fit.thresholds is None:
            cells += ["-", "-", "-", "-", "-"]
        else:
            d = decision_metrics(labels, fit.oof, fit.thresholds)
            cells += [
                f"{fit.thresholds.t_low:.6f}",
                f"{fit.thresholds.t_high:.6f}",
                fmt(d.tpr_certain, True),
                fmt(d.fpr_certain, True),
                fmt(d.uncertain_rate, True),
            ]
        rows.append(cells)
    headers = ["fusion", "AUC", "t_low", "t_high", "TPR(certain)", "FPR(certain)", "uncertain"]
    return (
        "fusions compared (out of fold, each at its own thresholds; * = in the bundle)\n"
        + format_table(headers, rows)
    )
