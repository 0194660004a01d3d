"""``wma calibrate fit``: isotonic calibrators, out-of-fold metrics and thresholds.

The exported calibrators are fitted on all videos. Honest metrics and the
thresholds come from out-of-fold calibrated scores (stratified k-fold, seeded):
each video is calibrated by curves that never saw it, then fused with the
core's noisy-OR exactly as the gateway will fuse live scores.
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
from wma_core import IsotonicCurve, noisy_or

from wma_calibrators.bundle import CalibratorBundle, ModelCalibrator
from wma_calibrators.errors import CalibrateError
from wma_calibrators.metrics import auc, decision_metrics, metrics_report, youden_point
from wma_calibrators.provenance import created_timestamp, tool_version
from wma_calibrators.scores import VideoScores
from wma_calibrators.thresholds import choose_band

FloatArray = npt.NDArray[np.float64]


def fit_isotonic(x: FloatArray, y: npt.NDArray[np.int64]) -> IsotonicRegression:
    """The product's calibrator: a clipped isotonic regression into [0, 1]."""
    model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    model.fit(x, y.astype(np.float64))
    return model


def curve_of(model: IsotonicRegression) -> IsotonicCurve:
    """The breakpoints of a fitted scikit-learn isotonic regression."""
    return IsotonicCurve.from_points(model.X_thresholds_, model.y_thresholds_)


def fuse_rows(calibrated: Mapping[str, FloatArray]) -> FloatArray:
    """Noisy-OR (the core's) of each video's calibrated member scores."""
    matrix = np.column_stack([np.asarray(v, dtype=np.float64) for v in calibrated.values()])
    return np.fromiter((noisy_or(row) for row in matrix), dtype=np.float64, count=len(matrix))


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
) -> FitResult:
    """Fit calibrators and thresholds; returns the bundle and its metrics table."""
    oof = out_of_fold(videos, k, seed, progress)
    fused = fuse_rows(oof)
    centre = youden_point(videos.labels, fused)
    thresholds = choose_band(fused, centre, uncertain_rate)
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
    prov["method"] = (
        f"isotonic regression per model (scikit-learn IsotonicRegression, out_of_bounds=clip, "
        f"y in [0, 1]) on aggregated video scores, exported from all {len(videos)} videos; "
        f"thresholds from {k}-fold stratified out-of-fold noisy-OR scores (seed {seed}): "
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
    bundle = CalibratorBundle(thresholds=thresholds, models=models, provenance=prov)
    report = metrics_report(videos.labels, fused, dict(videos.scores), thresholds, videos.methods)
    return FitResult(bundle=bundle, report=report)
