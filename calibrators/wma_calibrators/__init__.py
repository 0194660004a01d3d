"""The tool that makes calibrator bundles (``wma calibrate``); the bundle format
(load, validate, hash) is the core's, :mod:`wma_core.bundle`, re-exported here."""

from wma_core.bundle import (
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
