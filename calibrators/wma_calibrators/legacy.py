"""``wma calibrate import-legacy``: the old pickled calibrators, made a bundle.

The old client stored ``{model_id: IsotonicRegression}`` with ``pickle``.
Unpickling executes code chosen by whoever wrote the file, so it is refused
unless the user says the file is trusted; the result is a JSON bundle that
never needs ``pickle`` again.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sklearn.isotonic import IsotonicRegression
from wma_core import IsotonicCurve, Thresholds
from wma_core.bundle import CalibratorBundle, ModelCalibrator

from wma_calibrators.errors import CalibrateError, UntrustedPickleError
from wma_calibrators.provenance import created_timestamp, tool_version


def load_legacy_pickle(
    path: str | Path, *, trust: bool
) -> tuple[dict[str, IsotonicRegression], str]:
    """Unpickle a ``{model_id: IsotonicRegression}`` file (only when ``trust``);
    returns the models and the sha256 of the file's bytes, read once."""
    if not trust:
        raise UntrustedPickleError(
            f"refusing to unpickle {path}: loading a pickle runs arbitrary code from the file; "
            "pass --trust-pickle only if you know where this file came from"
        )
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CalibrateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        # The user vouched for this file (--trust-pickle); see module docstring.
        obj = pickle.loads(data)
    except Exception as exc:
        # Unpickling runs the file's own code, which may raise anything at all.
        raise CalibrateError(
            f"{path} is not a readable pickle: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(obj, dict) or not obj:
        raise CalibrateError(f"{path} must hold a non-empty dict of model id -> IsotonicRegression")
    for model_id, model in obj.items():
        if not isinstance(model_id, str):
            raise CalibrateError(f"{path}: model id {model_id!r} is not a string")
        if not isinstance(model, IsotonicRegression) or not hasattr(model, "X_thresholds_"):
            raise CalibrateError(
                f"{path}: entry {model_id!r} is {type(model).__name__}, "
                "not a fitted IsotonicRegression"
            )
        if model.out_of_bounds != "clip":
            raise CalibrateError(
                f"{path}: entry {model_id!r} has out_of_bounds={model.out_of_bounds!r}; "
                "only 'clip' calibrators can be exported exactly"
            )
    return obj, hashlib.sha256(data).hexdigest()


def legacy_bundle(
    models: Mapping[str, IsotonicRegression],
    aggregators: Mapping[str, str],
    thresholds: Thresholds,
    *,
    source_sha256: str,
    created: str | None = None,
) -> CalibratorBundle:
    """A bundle whose curves are the legacy models' breakpoints, unchanged."""
    calibrators: dict[str, ModelCalibrator] = {}
    for model_id, model in models.items():
        try:
            curve = IsotonicCurve.from_points(model.X_thresholds_, model.y_thresholds_)
        except ValueError as exc:
            raise CalibrateError(f"legacy calibrator {model_id!r}: {exc}") from None
        calibrators[model_id] = ModelCalibrator(aggregators[model_id], curve, {})
    provenance: dict[str, Any] = {
        "created": created_timestamp(created),
        "tool_version": tool_version(),
        "source_sha256": source_sha256,
        "method": "imported from a legacy pickle of scikit-learn IsotonicRegression "
        "(breakpoints X_thresholds_/y_thresholds_ copied unchanged)",
    }
    return CalibratorBundle(thresholds=thresholds, models=calibrators, provenance=provenance)
