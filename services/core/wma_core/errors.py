"""The core's error for a refused calibrator bundle (the other core errors live
beside the rule they guard, e.g. :class:`~wma_core.aggregate.AggregatorError`)."""

from __future__ import annotations

__all__ = ["BundleError"]


class BundleError(ValueError):
    """A bundle that is not valid; ``field`` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
