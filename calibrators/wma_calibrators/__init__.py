"""Calibrator bundles and the tool that makes them (``wma calibrate``)."""

from wma_calibrators.bundle import (
    BUNDLE_FORMAT,
    BundleError,
    CalibratorBundle,
    ModelCalibrator,
    dump_bundle,
    load_bundle,
    parse_bundle,
    write_bundle,
)

__all__ = [
    "BUNDLE_FORMAT",
    "BundleError",
    "CalibratorBundle",
    "ModelCalibrator",
    "dump_bundle",
    "load_bundle",
    "parse_bundle",
    "write_bundle",
]
