"""The replicas of one ensemble member: where they are, which one takes a call.

A :class:`ReplicaSet` holds a model's replicas (from ``endpoint``, ``endpoints`` or
a ``discover`` DNS name), each with its own circuit breaker and count of calls in
flight. :meth:`ReplicaSet.pick` balances per request: the replica with the fewest
calls in flight among those whose breaker is closed (ties broken at random, so
sequential calls spread too), then a half-open one for its probe call; an open
one never. Calls are balanced per request, not per connection, so a new replica
gets its share at once instead of when pooled connections churn.

:class:`ReplicaDiscovery` runs in the gateway's lifespan and re-resolves every
``discover`` name every ``fanout.discovery_interval_s``: a new address is a new
replica (its breaker fresh), a gone one leaves the set (calls in flight to it
finish). A failed or empty resolution keeps the last known set: the breakers,
and their readiness probes, deal with replicas that are gone.

A set is the one mutable part of a :class:`~wma_fusion.state.RuntimeState`: a
reload keeps it (and its breakers) while the model's replica source and the
breaker settings are unchanged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from wma_fusion.breaker import BreakerState, CircuitBreaker

log = logging.getLogger("wma_fusion.replicas")

# A DNS name and port -> the addresses it resolves to (tests pass their own).
Resolver = Callable[[str, int], Awaitable[list[str]]]
BreakerFactory = Callable[[str], CircuitBreaker]


async def resolve_addresses(name: str, port: int) -> list[str]:
    """Every address ``name`` resolves to (A and AAAA), sorted, without repeats."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def replica_url(address: str, port: int) -> str:
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    return f"http://{host}:{port}"


def replica_label(url: str) -> str:
    """``host:port`` of a replica's URL: its name in metrics, spans and ``/readyz``."""
    parts = urlsplit(url)
    return parts.netloc or url


@dataclass(eq=False)
class Replica:
    """One server of a model; ``in_flight`` counts the calls it has now."""

    url: str
    breaker: CircuitBreaker
    in_flight: int = 0
    # fanout.shared_memory: the region registered on it (None: none yet, or it
    # restarted), and when to ask again after it refused one (a monotonic time)
    shared_region: str | None = None
    shared_retry_at: float = 0.0

    @property
    def label(self) -> str:
        return replica_label(self.url)


@dataclass(eq=False)
class ReplicaSet:
    model_id: str
    source: str
    replicas: list[Replica]
    make_breaker: BreakerFactory
    discovered: bool = False
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def pick(self, exclude: Iterable[Replica] = ()) -> Replica | None:
        """The replica for the next attempt (not one in ``exclude``), or None.

        A half-open replica is picked only when no closed one is left, and then
        takes the breaker's single probe slot (``allow``)."""
        skip = set(exclude)
        order = sorted(
            (r for r in self.replicas if r not in skip),
            key=lambda r: (
                r.breaker.state is not BreakerState.CLOSED,
                r.in_flight,
                self._rng.random(),
            ),
        )
        for replica in order:
            if replica.breaker.allow():
                return replica
        return None

    def has_candidate(self, exclude: Iterable[Replica]) -> bool:
        """Whether another replica (not in ``exclude``) could take an attempt now."""
        skip = set(exclude)
        return any(
            r not in skip and r.breaker.state is not BreakerState.OPEN for r in self.replicas
        )

    @property
    def up(self) -> int:
        """Replicas whose breaker is closed."""
        return sum(r.breaker.state is BreakerState.CLOSED for r in self.replicas)

    @property
    def state(self) -> BreakerState:
        """The model's circuit: closed while a replica's is, else half-open or open."""
        states = {r.breaker.state for r in self.replicas}
        for state in (BreakerState.CLOSED, BreakerState.HALF_OPEN):
            if state in states:
                return state
        return BreakerState.OPEN

    def update(self, urls: Iterable[str]) -> bool:
        """Make the set ``urls`` (a discovery's answer); True when it changed."""
        wanted = list(dict.fromkeys(urls))
        have = {r.url: r for r in self.replicas}
        if list(have) == wanted:
            return False
        self.replicas = [have.get(u) or Replica(u, self.make_breaker(u)) for u in wanted]
        gone = sorted(set(have) - set(wanted))
        new = [u for u in wanted if u not in have]
        log.info(
            "model %s: replicas %s (new: %s; gone: %s)",
            self.model_id,
            ", ".join(replica_label(u) for u in wanted),
            ", ".join(replica_label(u) for u in new) or "none",
            ", ".join(replica_label(u) for u in gone) or "none",
        )
        return True


class ReplicaDiscovery:
    """Re-resolve every ``discover`` name of the current state, forever."""

    def __init__(
        self,
        current: Callable[[], Iterable[tuple[tuple[str, int], ReplicaSet]]],
        interval: Callable[[], float],
        resolver: Resolver = resolve_addresses,
        timeout_s: float = 2.0,
    ) -> None:
        self._current = current
        self._interval = interval
        self._resolver = resolver
        self._timeout_s = timeout_s
        self._failing: set[str] = set()

    async def refresh(self) -> None:
        """Resolve every name once (in parallel) and update its set."""
        targets = list(self._current())
        await asyncio.gather(*(self._refresh(target, rs) for target, rs in targets))

    async def _refresh(self, target: tuple[str, int], replicas: ReplicaSet) -> None:
        name, port = target
        try:
            async with asyncio.timeout(self._timeout_s):
                addresses = await self._resolver(name, port)
        except (OSError, TimeoutError) as exc:
            if replicas.source not in self._failing:
                self._failing.add(replicas.source)
                log.warning(
                    "model %s: cannot resolve %s (%s); keeping %d known replica(s)",
                    replicas.model_id,
                    replicas.source,
                    exc or type(exc).__name__,
                    len(replicas.replicas),
                )
            return
        self._failing.discard(replicas.source)
        if not addresses:
            return
        replicas.update(replica_url(a, port) for a in addresses)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval())
            await self.refresh()
