"""The soak: many calls from concurrent clients, some malformed, every answer checked.

:func:`run_soak` sends ``calls`` requests from ``clients`` concurrent clients (each
its own connection pool, keeping its connection alive across answers, so an error
answer that broke its connection shows up on the next call) to a
:class:`wma_local.livestack.LiveStack`. About ``bad_fraction`` of the calls are
malformed, taking the kinds of :data:`wma_local.traffic.MALFORMED` in turn. It
records each answer's :class:`wma_local.load.Outcome`, the latency of the good
calls and each process's resident memory before the load, after the first tenth
of it (warm) and at the end. :meth:`SoakReport.lines` prints it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from wma_local.livestack import LiveStack
from wma_local.load import CLIENT_TIMEOUT_S, ONE_CONNECTION, Outcome, percentiles, send
from wma_local.oracle import Oracle
from wma_local.traffic import MALFORMED, Call, good_call, malformed_call

__all__ = ["SoakReport", "plan_calls", "run_soak"]


@dataclass
class SoakReport:
    calls: int
    clients: int
    elapsed_s: float
    outcomes: list[Outcome]
    rss_kib: dict[str, dict[str, int]] = field(default_factory=dict)
    # each process's RSS after every tenth of the calls (the trend: plateau or leak)
    rss_trend: list[dict[str, int]] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Every unexpected answer (wrong status, wrong verdict, not JSON, no answer)."""
        return [o.problem or f"{o.call.kind}: no answer ({o.error})" for o in self.outcomes
                if o.problem is not None or o.error is not None] + [
            f"{o.call.kind}: repeated, its kept-alive connection was closed"
            for o in self.outcomes if o.retried
        ]  # fmt: skip

    @property
    def good(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.call.good]

    def latency_ms(self) -> dict[int, float]:
        return percentiles([o.latency_ms for o in self.good])

    def growth(self, since: str = "warm") -> dict[str, float]:
        """Each process's RSS growth in per cent, from ``since`` (start or warm) to the end."""
        start, end = self.rss_kib[since], self.rss_kib["end"]
        return {name: 100.0 * (end[name] - start[name]) / start[name] for name in end}

    def lines(self) -> list[str]:
        bad = Counter(o.call.kind for o in self.outcomes if not o.call.good)
        verdicts = Counter(o.verdict for o in self.good)
        lat = self.latency_ms()
        out = [
            f"soak: {self.calls} calls from {self.clients} clients in {self.elapsed_s:.1f} s "
            f"({self.calls / self.elapsed_s:.1f} calls/s)",
            f"good calls: {len(self.good)}; verdicts "
            + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items(), key=str)),
            f"malformed calls: {sum(bad.values())} of {len(bad)} kinds",
            f"latency of good calls: p50 {lat[50]:.1f} ms, p99 {lat[99]:.1f} ms",
            f"unexpected answers: {len(self.problems)}",
        ]
        out += [f"  {p}" for p in self.problems[:20]]
        if self.rss_kib:
            out.append("RSS (MiB) start / warm / end, growth warm->end:")
            growth = self.growth()
            for name, start in self.rss_kib["start"].items():
                warm, end = self.rss_kib["warm"][name], self.rss_kib["end"][name]
                out.append(
                    f"  {name:9s} {start / 1024:7.1f} {warm / 1024:7.1f} {end / 1024:7.1f}"
                    f"  {growth[name]:+.2f} %"
                )
        if self.rss_trend:
            out.append("RSS (MiB) after each tenth of the calls:")
            for name in self.rss_trend[0]:
                trend = " ".join(f"{t[name] / 1024:.0f}" for t in self.rss_trend)
                out.append(f"  {name:9s} {trend}")
            half = self.rss_trend[len(self.rss_trend) // 2 - 1]
            out.append(
                "RSS growth over the second half: "
                + ", ".join(
                    f"{n} {100.0 * (self.rss_kib['end'][n] - k) / k:+.2f} %"
                    for n, k in half.items()
                )
            )
        return out


def plan_calls(calls: int, bad_fraction: float, members: tuple[str, ...], seed: int) -> list[Call]:
    """The soak's calls in order: good ones, and about ``bad_fraction`` malformed, their
    kinds in turn (so even a short soak sends each kind)."""
    rng = random.Random(seed)
    kinds = iter(MALFORMED * (calls // len(MALFORMED) + 1))
    return [
        malformed_call(rng, members, next(kinds))
        if rng.random() < bad_fraction
        else good_call(rng, participant=f"soak-{i % 50}")
        for i in range(calls)
    ]


async def _run(stack: LiveStack, plan: list[Call], clients: int, warm_at: int) -> SoakReport:
    oracle = Oracle(stack.bundle, stack.biases)
    urls = {"gateway": stack.url} | {m: stack.member(m).url for m in stack.model_ids}
    outcomes: list[Outcome] = []
    rss = {"start": stack.rss()}
    trend: list[dict[str, int]] = []
    tenth = max(1, len(plan) // 10)
    queue = iter(plan)

    async def client() -> None:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, limits=ONE_CONNECTION) as http:
            reused = False
            for call in queue:
                outcome = await send(http, urls, call, oracle, reused=reused)
                outcomes.append(outcome)
                reused = outcome.keep_alive
                if len(outcomes) == warm_at:
                    rss["warm"] = stack.rss()
                if len(outcomes) % tenth == 0:
                    trend.append(stack.rss())

    start = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.monotonic() - start
    rss["end"] = stack.rss()
    rss.setdefault("warm", rss["start"])
    return SoakReport(len(plan), clients, elapsed, outcomes, rss, trend)


def run_soak(
    stack: LiveStack,
    calls: int = 2000,
    clients: int = 8,
    bad_fraction: float = 0.05,
    seed: int = 11,
) -> SoakReport:
    """Soak ``stack`` (see the module docstring); the report holds every outcome."""
    plan = plan_calls(calls, bad_fraction, stack.model_ids, seed)
    return asyncio.run(_run(stack, plan, clients, warm_at=max(1, calls // 10)))
