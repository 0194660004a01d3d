"""Calibrator bundles: versioned JSON, strictly validated, pinned by sha256.

A bundle never holds pickled objects: each model's isotonic calibrator is its
breakpoints; the optional ``fusion`` field names the fusion rule (absent:
noisy-OR, see :mod:`wma_core.bundle_fusion`). The sha256 is over the
file bytes exactly as stored, so a deployment can pin the file it was tested with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wma_core import NOISY_OR, FusionRule, IsotonicCurve, Thresholds, parse_aggregator
from wma_core.aggregate import AggregatorError
from wma_core.bundle_fusion import fusion_document, parse_fusion
from wma_core.calibration import CurveError
from wma_core.errors import BundleError

__all__ = [
    "BUNDLE_FORMAT",
    "BundleError",
    "CalibratorBundle",
    "ModelCalibrator",
    "bundle_document",
    "dump_bundle",
    "load_bundle",
    "parse_bundle",
    "write_bundle",
]

BUNDLE_FORMAT = "wma-calibrators/v1"


@dataclass(frozen=True)
class ModelCalibrator:
    """One model's aggregator name, isotonic curve and fit metrics."""

    aggregator: str
    curve: IsotonicCurve
    metrics: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CalibratorBundle:
    thresholds: Thresholds
    models: Mapping[str, ModelCalibrator]
    provenance: Mapping[str, Any] = field(default_factory=dict)
    sha256: str = ""
    fusion: FusionRule = NOISY_OR

    def output_ranges(self) -> dict[str, tuple[float, float]]:
        return {m: c.curve.output_range for m, c in self.models.items()}


def _number(value: object, where: str) -> float:
    """A JSON number (its range is checked by the type it goes into)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BundleError(where, f"must be a number, got {type(value).__name__}")
    return float(value)


def _number_list(value: object, where: str) -> list[float]:
    if not isinstance(value, list):
        raise BundleError(where, "must be a list of numbers")
    if not value:
        raise BundleError(where, "must not be empty")
    return [_number(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BundleError(where, "must be an object")
    return value


def _no_unknown(entry: dict[str, Any], where: str, known: set[str]) -> None:
    unknown = set(entry) - known
    if unknown:
        prefix = f"{where}." if where else ""
        raise BundleError(f"{prefix}{sorted(unknown)[0]}", "unknown field")


def _parse_model(model_id: str, raw: object) -> ModelCalibrator:
    where = f"models.{model_id}"
    entry = _mapping(raw, where)
    _no_unknown(entry, where, {"aggregator", "isotonic", "metrics"})
    aggregator = entry.get("aggregator")
    if not isinstance(aggregator, str):
        raise BundleError(f"{where}.aggregator", "must be a string")
    try:
        parse_aggregator(aggregator)
    except AggregatorError as exc:
        raise BundleError(f"{where}.aggregator", str(exc)) from None
    iso = _mapping(entry.get("isotonic"), f"{where}.isotonic")
    _no_unknown(iso, f"{where}.isotonic", {"x", "y"})
    xs = _number_list(iso.get("x"), f"{where}.isotonic.x")
    ys = _number_list(iso.get("y"), f"{where}.isotonic.y")
    try:
        curve = IsotonicCurve.from_points(xs, ys)
    except CurveError as exc:
        point = f".{exc.field}" if exc.field else ""
        raise BundleError(f"{where}.isotonic{point}", exc.problem) from None
    metrics = _mapping(entry.get("metrics", {}), f"{where}.metrics")
    return ModelCalibrator(aggregator, curve, metrics)


def parse_bundle(data: bytes) -> CalibratorBundle:
    """Parse and validate bundle bytes; raises :class:`BundleError`."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError("<file>", f"not valid JSON ({exc})") from None
    doc = _mapping(raw, "<root>")
    _no_unknown(doc, "", {"format", "thresholds", "models", "provenance", "fusion"})
    if doc.get("format") != BUNDLE_FORMAT:
        raise BundleError("format", f"must be {BUNDLE_FORMAT!r}, got {doc.get('format')!r}")
    thr = _mapping(doc.get("thresholds"), "thresholds")
    _no_unknown(thr, "thresholds", {"t_low", "t_high"})
    t_low = _number(thr.get("t_low"), "thresholds.t_low")
    t_high = _number(thr.get("t_high"), "thresholds.t_high")
    try:
        thresholds = Thresholds(t_low, t_high)
    except ValueError as exc:
        raise BundleError("thresholds", str(exc)) from None
    models_raw = _mapping(doc.get("models"), "models")
    if not models_raw:
        raise BundleError("models", "must name at least one model")
    models = {mid: _parse_model(mid, entry) for mid, entry in models_raw.items()}
    provenance = _mapping(doc.get("provenance", {}), "provenance")
    return CalibratorBundle(
        thresholds=thresholds,
        models=models,
        provenance=provenance,
        sha256=hashlib.sha256(data).hexdigest(),
        fusion=parse_fusion(doc.get("fusion"), models),
    )


def load_bundle(path: str | Path, expected_sha256: str | None = None) -> CalibratorBundle:
    """Read, validate and (optionally) check the pinned sha256 of a bundle file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BundleError("<file>", f"cannot read {path}: {exc.strerror}") from None
    bundle = parse_bundle(data)
    if expected_sha256 is not None and bundle.sha256 != expected_sha256.lower():
        raise BundleError(
            "sha256", f"file {path} has sha256 {bundle.sha256}, expected {expected_sha256}"
        )
    return bundle


def bundle_document(bundle: CalibratorBundle) -> dict[str, Any]:
    """The JSON document of a bundle (without its sha256, which is of the bytes)."""
    doc: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "thresholds": {"t_low": bundle.thresholds.t_low, "t_high": bundle.thresholds.t_high},
        "models": {
            mid: {
                "aggregator": cal.aggregator,
                "isotonic": {"x": cal.curve.x.tolist(), "y": cal.curve.y.tolist()},
                "metrics": dict(cal.metrics),
            }
            for mid, cal in bundle.models.items()
        },
        "provenance": dict(bundle.provenance),
    }
    fusion = fusion_document(bundle.fusion)
    if fusion is not None:
        doc["fusion"] = fusion
    return doc


def dump_bundle(bundle: CalibratorBundle) -> bytes:
    """Deterministic bytes for a bundle: sorted keys, two-space indent, newline."""
    text = json.dumps(bundle_document(bundle), indent=2, sort_keys=True, allow_nan=False)
    return (text + "\n").encode()


def write_bundle(bundle: CalibratorBundle, path: str | Path) -> str:
    """Write a bundle and return the sha256 of the bytes written."""
    data = dump_bundle(bundle)
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()
