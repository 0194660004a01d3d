"""``wma calibrate fit``: isotonic calibrators, out-of-fold metrics and thresholds.

The exported calibrators are fitted on all videos. Honest metrics and the
thresholds come from out-of-fold calibrated scores (stratified k-fold, seeded):
each video is calibrated by curves that never saw it, then fused with the
bundle's fusion rule (the core's, exactly as the gateway will fuse live
scores; see :mod:`wma_calibrators.fusion_fit`). All three fusions are compared
in the report; only the chosen one goes into the bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold
from tqdm import tqdm
from wma_core import IsotonicCurve
from wma_core.bundle import CalibratorBundle, ModelCalibrator

from wma_calibrators.errors import CalibrateError
from wma_calibrators.fusion_fit import comparison_table, fit_all, fuse_rows
from wma_calibrators.metrics import auc, decision_metrics, metrics_report
from wma_calibrators.provenance import created_timestamp, tool_version
from wma_calibrators.scores import VideoScores

FloatArray = npt.NDArray[np.float64]


def fit_isotonic(x: FloatArray, y: npt.NDArray[np.int64]) -> IsotonicRegression:
    """The product's calibrator: a clipped isotonic regression into [0, 1]."""
    model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    model.fit(x, y.astype(np.float64))
    return model


def curve_of(model: IsotonicRegression) -> IsotonicCurve:
    """The breakpoints of a fitted scikit-learn isotonic regression."""
    return IsotonicCurve.from_points(model.X_thresholds_, model.y_thresholds_)


__all__ = ["FitResult", "curve_of", "fit_bundle", "fit_isotonic", "fuse_rows", "out_of_fold"]


def out_of_fold(
    videos: VideoScores, k: int, seed: int, progress: bool = False
) -> dict[str, FloatArray]:
    """Each video's score calibrated by curves fitted without its fold."""
    per_class = np.bincount(videos.labels, minlength=2)
    if k < 2 or per_class.min() < k:
        raise CalibrateError(
            f"{k}-fold calibration needs k >= 2 and at least k videos of each label "
            f"(have {per_class[0]} real, {per_class[1]} fake)"
        )
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    result = {m: np.empty(len(videos)) for m in videos.model_ids}
    splits = list(folds.split(np.zeros(len(videos)), videos.labels))
    for train, test in tqdm(splits, desc="out-of-fold", unit="fold", disable=not progress):
        for model_id, scores in videos.scores.items():
            model = fit_isotonic(scores[train], videos.labels[train])
            result[model_id][test] = curve_of(model).predict(scores[test])
    return result


@dataclass(frozen=True)
class FitResult:
    bundle: CalibratorBundle
    report: str


def _number(value: float) -> float | None:
    """JSON-safe metric: NaN (undefined rate) becomes null."""
    return None if np.isnan(value) else float(value)


def fit_bundle(
    videos: VideoScores,
    aggregators: Mapping[str, str],
    *,
    k: int = 5,
    seed: int = 0,
    uncertain_rate: float = 0.02,
    provenance: Mapping[str, Any] | None = None,
    progress: bool = False,
    fusion: str = "noisy_or",
) -> FitResult:
    """Fit calibrators, the ``fusion`` and thresholds; returns the bundle and its report."""
    oof = out_of_fold(videos, k, seed, progress)
    fits = fit_all(oof, videos.labels, k=k, seed=seed, uncertain_rate=uncertain_rate)
    chosen = fits[fusion]
    if chosen.thresholds is None:
        raise CalibrateError(f"fusion {fusion}: {chosen.problem}")
    fused, centre, thresholds = chosen.oof, chosen.centre, chosen.thresholds
    models: dict[str, ModelCalibrator] = {}
    for model_id, scores in videos.scores.items():
        curve = curve_of(fit_isotonic(scores, videos.labels))
        metrics = {
            "auc": _number(auc(videos.labels, scores)),
            "auc_oof_calibrated": _number(auc(videos.labels, oof[model_id])),
            "n_videos": len(videos),
            "n_fake": int(videos.labels.sum()),
            "n_real": int(len(videos) - videos.labels.sum()),
        }
        models[model_id] = ModelCalibrator(aggregators[model_id], curve, metrics)
    decided = decision_metrics(videos.labels, fused, thresholds)
    prov: dict[str, Any] = dict(provenance or {})
    prov.setdefault("created", created_timestamp())
    prov.setdefault("tool_version", tool_version())
    fused_by = {
        "noisy_or": "noisy-OR",
        "sum_logits": "sum-of-logits",
        "stacked": "stacked (non-negative logistic regression on calibrated logits, "
        "fitted out of fold)",
    }[fusion]
    prov["method"] = (
        f"isotonic regression per model (scikit-learn IsotonicRegression, out_of_bounds=clip, "
        f"y in [0, 1]) on aggregated video scores, exported from all {len(videos)} videos; "
        f"thresholds from {k}-fold stratified out-of-fold {fused_by} scores (seed {seed}): "
        f"band centred on the Youden point {centre!r} holding {uncertain_rate:.2%} of videos "
        "by rank"
    )
    prov["fit"] = {
        "k": k,
        "seed": seed,
        "uncertain_rate_target": uncertain_rate,
        "youden_centre": centre,
        "n_videos": len(videos),
        "n_dropped_incomplete": videos.dropped,
        "layout": videos.layout,
        "oof_auc_fused": _number(auc(videos.labels, fused)),
        "oof_tpr_certain": _number(decided.tpr_certain),
        "oof_fpr_certain": _number(decided.fpr_certain),
        "oof_uncertain_rate": _number(decided.uncertain_rate),
    }
    if fusion != "noisy_or":  # noisy-OR bundles stay byte for byte as they always were
        prov["fit"]["fusion"] = fusion
    bundle = CalibratorBundle(
        thresholds=thresholds, models=models, provenance=prov, fusion=chosen.rule
    )
    report = metrics_report(
        videos.labels,
        fused,
        dict(videos.scores),
        thresholds,
        videos.methods,
        fusion_label=chosen.rule.label,
    )
    report += "\n\n" + comparison_table(videos.labels, fits, fusion)
    return FitResult(bundle=bundle, report=report)
