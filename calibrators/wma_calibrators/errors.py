"""The exception tree of the calibrator tool.

Every error a user can cause (a bad scores file, an unknown aggregator in a
mapping, an untrusted pickle) is a :class:`CalibrateError`; bundle validation
keeps its own :class:`~wma_core.errors.BundleError` (the bundle format is the
core's, :mod:`wma_core.bundle`), which names the offending field. The CLI maps
both to exit code 2 and a one-line message.
"""

from __future__ import annotations


class CalibrateError(ValueError):
    """A problem with the user's input to ``wma calibrate``."""


class ScoresError(CalibrateError):
    """A scores file (CSV or Parquet) that cannot be used."""


class UntrustedPickleError(CalibrateError):
    """A legacy pickle that was not explicitly trusted (unpickling runs code)."""
