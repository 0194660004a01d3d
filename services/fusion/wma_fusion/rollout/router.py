"""Routing decision of one request: which paths run and which one answers.

Pure: the mode, the canary settings and a participant id in, a :class:`Route`
out. The analyze route reads the rollout configuration once at the start of a
request and routes on that snapshot, so a hot reload never changes the plan of
a request in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wma_fusion.rollout.canary import in_canary
from wma_fusion.rollout.config import RolloutConfig, RolloutMode


class ServedBy(StrEnum):
    LEGACY = "legacy"
    ENSEMBLE = "ensemble"


@dataclass(frozen=True)
class Route:
    """The plan of one request under ``mode``."""

    mode: RolloutMode
    served_by: ServedBy
    run_legacy: bool
    run_ensemble: bool

    @property
    def compared(self) -> bool:
        """Both paths run, so a comparison record is written."""
        return self.run_legacy and self.run_ensemble

    @property
    def shadow(self) -> ServedBy | None:
        """The path that runs without serving, if any."""
        if not self.compared:
            return None
        return ServedBy.ENSEMBLE if self.served_by is ServedBy.LEGACY else ServedBy.LEGACY


def route(config: RolloutConfig, participant_id: str) -> Route:
    """Decide the paths of one request for ``participant_id`` under ``config``."""
    mode = config.mode
    if mode is RolloutMode.ENSEMBLE:
        return Route(mode, ServedBy.ENSEMBLE, run_legacy=False, run_ensemble=True)
    if mode is RolloutMode.LEGACY:
        return Route(mode, ServedBy.LEGACY, run_legacy=True, run_ensemble=False)
    if mode is RolloutMode.SHADOW:
        return Route(mode, ServedBy.LEGACY, run_legacy=True, run_ensemble=True)
    canary = in_canary(participant_id, config.canary_percent, config.canary_salt)
    served = ServedBy.ENSEMBLE if canary else ServedBy.LEGACY
    both = config.shadow_other_path
    return Route(
        mode,
        served,
        run_legacy=both or served is ServedBy.LEGACY,
        run_ensemble=both or served is ServedBy.ENSEMBLE,
    )
