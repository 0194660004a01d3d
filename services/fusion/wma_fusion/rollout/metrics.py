"""Prometheus metrics of the rollout, registered on the gateway's per-app registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

# Label value for a path that gave no banner because it failed.
FAILED = "ERROR"


class RolloutMetrics:
    """Agreement of the two paths, and who served what under which mode."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.agreement = Counter(
            "wma_rollout_agreement",
            "Compared requests by the banner of each path (ERROR: the path failed)",
            ["legacy_banner", "ensemble_banner"],
            registry=registry,
        )
        self.served = Counter(
            "wma_rollout_served",
            "Requests by rollout mode and the path that served them",
            ["mode", "served_by"],
            registry=registry,
        )
        self.path_failures = Counter(
            "wma_rollout_path_failures",
            "Failed legacy or ensemble path runs (served or shadowed) by status",
            ["path", "status"],
            registry=registry,
        )

    def observe_comparison(self, legacy_banner: str | None, ensemble_banner: str | None) -> None:
        self.agreement.labels(legacy_banner or FAILED, ensemble_banner or FAILED).inc()
