"""The gateway's runtime state: config + loaded bundle + per-model members.

A :class:`RuntimeState` is immutable; a config reload builds a new one off to the
side and swaps it in with one assignment, so a request always sees one coherent
state. :class:`StateHolder` owns the swap, the file polling (by content hash: a
ConfigMap update swaps a symlink, so mtime alone is not enough) and keeps each
member's replicas (:class:`~wma_fusion.replicas.ReplicaSet`, with their circuit
breakers; and the rollout's legacy path's breaker) across reloads while the
replica source and the breaker settings are unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from wma_core import Aggregator, IsotonicCurve, Thresholds, parse_aggregator
from wma_core.bundle import BundleError, CalibratorBundle, load_bundle
from wma_wire.frames import FrameLimits

from wma_fusion.breaker import CircuitBreaker
from wma_fusion.config import GatewayConfig, ModelEntry, read_config
from wma_fusion.errors import ConfigError
from wma_fusion.replicas import Replica, ReplicaSet, replica_label

log = logging.getLogger("wma_fusion.state")


@dataclass(frozen=True)
class Member:
    """One ensemble member: its replicas, how to speak to them, how to read its scores."""

    entry: ModelEntry
    aggregator: Aggregator
    curve: IsotonicCurve
    replicas: ReplicaSet

    @property
    def id(self) -> str:
        return self.entry.id

    def replica_view(self) -> list[tuple[str, str, int]]:
        """(host:port, breaker state, calls in flight) of each replica (the metrics)."""
        return [(r.label, r.breaker.state.value, r.in_flight) for r in self.replicas.replicas]


@dataclass(frozen=True)
class RuntimeState:
    config: GatewayConfig
    bundle: CalibratorBundle
    members: tuple[Member, ...]
    thresholds: Thresholds
    thresholds_source: str  # "config" | "bundle"
    limits: FrameLimits
    config_sha256: str
    # The rollout's legacy path has a breaker of its own, like a member's.
    legacy_breaker: CircuitBreaker | None = None


BreakerKey = tuple[str, str]
# Model ids are never empty, so this key cannot collide with a member's.
LEGACY_BREAKER_ID = ""


def _breaker(
    config: GatewayConfig, key: BreakerKey, breakers: Mapping[BreakerKey, CircuitBreaker]
) -> CircuitBreaker:
    """The breaker kept under ``key`` if its settings still hold, else a fresh one
    (named for the log: ``model <id>`` or ``legacy model``)."""
    fb = config.fanout.breaker
    breaker = breakers.get(key)
    if breaker is None or (breaker.failure_threshold, breaker.reset_timeout_s) != (
        fb.failure_threshold,
        fb.reset_timeout_s,
    ):
        name = f"model {key[0]}" if key[0] != LEGACY_BREAKER_ID else "legacy model"
        breaker = CircuitBreaker(fb.failure_threshold, fb.reset_timeout_s, name=name)
    return breaker


def breakers_of(state: RuntimeState) -> dict[BreakerKey, CircuitBreaker]:
    """Every breaker of ``state`` by (id, replica URL), for :func:`build_state` to reuse."""
    kept = {(m.id, r.url): r.breaker for m in state.members for r in m.replicas.replicas}
    legacy = state.config.rollout.legacy
    if legacy is not None and state.legacy_breaker is not None:
        kept[(LEGACY_BREAKER_ID, str(legacy.endpoint))] = state.legacy_breaker
    return kept


def replica_sets_of(state: RuntimeState) -> dict[str, ReplicaSet]:
    """Every member's replica set by model id, for :func:`build_state` to keep."""
    return {m.id: m.replicas for m in state.members}


def _replica_set(
    config: GatewayConfig,
    entry: ModelEntry,
    breakers: Mapping[BreakerKey, CircuitBreaker],
    previous: ReplicaSet | None,
) -> ReplicaSet:
    """The member's replicas: the previous set while its source and breaker settings
    hold (a discovered set keeps what it found), else a new one that reuses the
    breakers of the replicas it shares with the old state."""
    fb = config.fanout.breaker
    settings = (fb.failure_threshold, fb.reset_timeout_s)
    if (
        previous is not None
        and previous.source == entry.source
        and all(
            (r.breaker.failure_threshold, r.breaker.reset_timeout_s) == settings
            for r in previous.replicas
        )
    ):
        return previous
    several = entry.endpoint is None

    def make(url: str) -> CircuitBreaker:
        name = f"model {entry.id}" + (f" replica {replica_label(url)}" if several else "")
        return CircuitBreaker(fb.failure_threshold, fb.reset_timeout_s, name=name)

    def kept(url: str) -> CircuitBreaker:
        breaker = breakers.get((entry.id, url))
        if breaker is None or (breaker.failure_threshold, breaker.reset_timeout_s) != settings:
            return make(url)
        return breaker

    # A discovered set starts with what the old state had found under the same name.
    urls = (
        entry.static_urls
        if entry.discover is None
        else tuple(r.url for r in previous.replicas)
        if previous is not None and previous.source == entry.source
        else ()
    )
    return ReplicaSet(
        entry.id,
        entry.source,
        [Replica(u, kept(u)) for u in urls],
        make,
        discovered=entry.discover is not None,
    )


def build_state(
    config: GatewayConfig,
    config_bytes: bytes = b"",
    breakers: Mapping[BreakerKey, CircuitBreaker] | None = None,
    replica_sets: Mapping[str, ReplicaSet] | None = None,
) -> RuntimeState:
    """Load the bundle and check the config against it; raises :class:`ConfigError`."""
    try:
        bundle = load_bundle(config.calibrators.path, config.calibrators.sha256)
    except BundleError as exc:
        field = "calibrators.sha256" if exc.field == "sha256" else "calibrators.path"
        raise ConfigError(field, f"bundle {config.calibrators.path}: {exc}") from None
    members = []
    for i, entry in enumerate(config.models):
        calibrator = bundle.models.get(entry.id)
        if calibrator is None:
            raise ConfigError(
                f"models.{i}.id", f"the calibrator bundle has no calibrator for {entry.id!r}"
            )
        if entry.aggregator is not None and entry.aggregator != calibrator.aggregator:
            raise ConfigError(
                f"models.{i}.aggregator",
                f"{entry.aggregator!r} differs from the bundle's {calibrator.aggregator!r} "
                "(the calibrator was fitted on that aggregator: train/serve skew)",
            )
        replicas = _replica_set(config, entry, breakers or {}, (replica_sets or {}).get(entry.id))
        members.append(
            Member(entry, parse_aggregator(calibrator.aggregator), calibrator.curve, replicas)
        )
    if config.thresholds is not None:
        thresholds = Thresholds(config.thresholds.t_low, config.thresholds.t_high)
        source = "config"
    else:
        thresholds, source = bundle.thresholds, "bundle"
    legacy = config.rollout.legacy
    legacy_breaker = (
        None
        if legacy is None
        else _breaker(config, (LEGACY_BREAKER_ID, str(legacy.endpoint)), breakers or {})
    )
    try:
        limits = FrameLimits(**config.limits.model_dump())
    except ValueError as exc:
        raise ConfigError("limits", str(exc)) from None
    return RuntimeState(
        config=config,
        bundle=bundle,
        members=tuple(members),
        thresholds=thresholds,
        thresholds_source=source,
        limits=limits,
        config_sha256=_sha256(config_bytes),
        legacy_breaker=legacy_breaker,
    )


def load_state(path: Path, env: Mapping[str, str] | None = None) -> RuntimeState:
    """Read, validate and load everything a config file names."""
    config, data = read_config(path, env)
    return build_state(config, data)


# (config sha256, bundle sha256) of the files a state was, or is to be, loaded from.
FilesKey = tuple[str, str | None]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _loaded_from(state: RuntimeState) -> FilesKey:
    return state.config_sha256, state.bundle.sha256


class StateHolder:
    """Holds the current state and replaces it when the config file's content changes."""

    def __init__(
        self,
        state: RuntimeState,
        path: Path | None = None,
        env: Mapping[str, str] | None = None,
        on_reload: Callable[[bool], None] | None = None,
    ) -> None:
        self.state = state
        self.path = path
        self._env = env
        self._on_reload = on_reload
        # What ``state`` was loaded from: no second read of either file at start.
        self._seen: FilesKey | None = _loaded_from(state) if path is not None else None

    def _digest(self) -> FilesKey | None:
        """The hashes of the config file and the current state's bundle file (None for
        a bundle that cannot be read); None when the config itself is unreadable."""
        assert self.path is not None
        try:
            config_sha = _sha256(self.path.read_bytes())
        except OSError:
            return None
        # The bundle can change under the same config (its own ConfigMap): hash both.
        try:
            bundle_sha = _sha256(Path(self.state.config.calibrators.path).read_bytes())
        except OSError:
            bundle_sha = None
        return config_sha, bundle_sha

    def reload_if_changed(self) -> bool | None:
        """Reload when the files changed; True/False for a reload that took/was refused."""
        if self.path is None:
            return None
        digest = self._digest()
        if digest == self._seen:
            return None
        self._seen = digest
        if digest is None:  # warned once; a file that comes back is a change again
            log.warning(
                "config file %s is gone or unreadable; keeping the config loaded from it", self.path
            )
            self._notify(False)
            return False
        try:
            config, data = read_config(self.path, self._env)
            new_state = build_state(
                config, data, breakers_of(self.state), replica_sets_of(self.state)
            )
        except ConfigError as exc:
            log.warning("refused new config %s, keeping the old one: %s", self.path, exc)
            self._notify(False)
            return False
        self.state = new_state
        # What the reload read, not what the poll hashed: a new config that names
        # another bundle would otherwise look changed again at the next poll.
        self._seen = _loaded_from(new_state)
        log.info(
            "loaded new config %s (config sha256 %s, calibrators sha256 %s)",
            self.path,
            new_state.config_sha256[:12],
            new_state.bundle.sha256[:12],
        )
        self._notify(True)
        return True

    def _notify(self, ok: bool) -> None:
        if self._on_reload is not None:
            self._on_reload(ok)

    async def watch(self) -> None:
        """Poll for changes until cancelled (the app's lifespan runs this as a task)."""
        while True:
            interval = self.state.config.reload.interval_s
            await asyncio.sleep(interval)
            if self.state.config.reload.enabled:
                await asyncio.to_thread(self.reload_if_changed)
