"""Rollout of the ensemble next to the legacy single-model path.

Modes (legacy, shadow, canary, ensemble) and sticky canary routing are exported
here; the legacy client (:mod:`.legacy`), comparison records (:mod:`.records`),
the report (:mod:`.report`) and the gateway glue (:mod:`.serve`) are imported
from their modules, so loading the config schema stays cheap and never pulls in
the gateway. See docs/rollout.md.
"""

from wma_fusion.rollout.canary import canary_bucket, in_canary
from wma_fusion.rollout.config import LegacyPath, RecordSink, RolloutConfig, RolloutMode
from wma_fusion.rollout.router import Route, ServedBy, route

__all__ = [
    "LegacyPath",
    "RecordSink",
    "Route",
    "RolloutConfig",
    "RolloutMode",
    "ServedBy",
    "canary_bucket",
    "in_canary",
    "route",
]
