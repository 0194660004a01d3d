"""Fault drills under steady load: a member killed, hung, all members down, the gateway stopped.

Each drill runs against a :class:`wma_local.livestack.LiveStack` while a few
clients send good analyze calls back to back, and checks every answer with the
oracle (:mod:`wma_local.oracle`), so a degraded answer must be the one the core
computes from the members that answered, and never a verdict the interval rule
forbids. The drills:

* ``kill``: SIGKILL one member, restart it on its port;
* ``hang``: SIGSTOP one member for longer than its timeout, then SIGCONT;
* ``all-down``: SIGKILL every member (answers are 503 JSON), restart them all;
* ``gateway-sigterm``: SIGTERM the gateway under load (more clients, so requests
  are in flight), then start it again.

**Lost** means a request that got no HTTP answer although the connection to the
server was made: a reset, a connection closed before the answer, a timeout. A
*refused* connection (nothing was sent) is not lost, but it is allowed only
after the gateway was told to stop; every request in flight when the SIGTERM
came must get its answer. After a member is ready again (its
``/v2/health/ready`` answers 200), the drill reports the **recovery time**: from
that moment to the first complete (not degraded) answer after which every answer
is complete (the goal is 2 s).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from wma_local.livestack import LiveStack
from wma_local.load import CLIENT_TIMEOUT_S, ONE_CONNECTION, Outcome, send
from wma_local.oracle import Oracle
from wma_local.traffic import good_call

__all__ = ["DRILLS", "DrillReport", "Timings", "run_drills"]

RECOVERY_GOAL_S = 2.0


@dataclass(frozen=True)
class Timings:
    """How long each phase lasts (seconds)."""

    settle_s: float = 1.0  # load before the fault
    down_s: float = 2.0  # a member (or all) down before the restart
    hang_margin_s: float = 1.5  # a hang lasts the member timeout plus this
    after_s: float = 3.0  # load after the member is ready again
    refused_s: float = 0.5  # load after the gateway has exited


@dataclass
class DrillReport:
    name: str
    outcomes: list[Outcome]
    events: dict[str, float] = field(default_factory=dict)  # monotonic times
    allow_503: bool = False
    gateway_exit: int | None = None

    @property
    def lost(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.lost]

    @property
    def refused(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.refused]

    @property
    def problems(self) -> list[str]:
        """Everything unexpected: wrong answers, lost requests, refusals before a SIGTERM."""
        out = []
        term = self.events.get("sigterm")
        for o in self.outcomes:
            if o.problem is not None:
                out.append(o.problem)
            elif o.lost:
                out.append(f"lost: {o.error}")
            elif o.refused and (term is None or o.sent < term):
                out.append("connection refused while the gateway was serving")
            elif o.retried and (term is None or o.sent < term):
                out.append("kept-alive connection closed while the gateway was serving")
            elif o.status == 503 and not self.allow_503:
                out.append("503 while members were up")
        return out

    @property
    def in_flight_at_sigterm(self) -> list[Outcome]:
        term = self.events.get("sigterm")
        if term is None:
            return []
        return [o for o in self.outcomes if o.sent < term < o.done]

    def recovery_s(self) -> float | None:
        """From the member being ready to the first complete answer that every later-sent
        answer is complete after; None if the answers never became complete."""
        ready = self.events.get("ready")
        if ready is None:
            return None
        after = sorted((o for o in self.outcomes if o.sent >= ready), key=lambda o: o.sent)
        first = None
        for o in reversed(after):
            if not o.complete:
                break
            first = o
        return None if first is None else first.done - ready

    def lines(self) -> list[str]:
        o = self.outcomes
        n503 = sum(x.status == 503 for x in o)
        out = [
            f"{self.name}: {len(o)} calls; complete {sum(x.complete for x in o)}, "
            f"degraded {sum(x.degraded and x.problem is None for x in o)}, 503 {n503}, "
            f"refused {len(self.refused)}, lost {len(self.lost)}, "
            f"repeated {sum(x.retried for x in o)}; "
            f"unexpected {len(self.problems)}"
        ]
        if "ready" in self.events:
            rec = self.recovery_s()
            shown = "never" if rec is None else f"{rec:.2f} s"
            start = self.events["ready"] - self.events.get("restart", self.events["ready"])
            out.append(
                f"  ready {start:.2f} s after the restart (or SIGCONT); complete answers "
                f"{shown} after ready (goal {RECOVERY_GOAL_S:g} s)"
            )
        if "sigterm" in self.events:
            flight = self.in_flight_at_sigterm
            answered = sum(x.status == 200 and x.problem is None for x in flight)
            drain = self.events.get("exited", float("nan")) - self.events["sigterm"]
            out.append(
                f"  in flight at SIGTERM {len(flight)}, answered {answered}; gateway exited "
                f"{self.gateway_exit} after {drain:.2f} s"
            )
        out += [f"  {p}" for p in self.problems[:10]]
        return out


class _Load:
    """``clients`` clients sending good calls back to back until :meth:`stop`."""

    def __init__(self, stack: LiveStack, clients: int, seed: int, allow_503: bool) -> None:
        self.stack = stack
        self.oracle = Oracle(stack.bundle, stack.biases)
        self.urls = {"gateway": stack.url}
        self.allowed = frozenset({503}) if allow_503 else frozenset()
        self.outcomes: list[Outcome] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._client(seed + i)) for i in range(clients)]

    async def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, limits=ONE_CONNECTION) as http:
            reused = False
            while not self._stop.is_set():
                call = good_call(rng, participant=f"drill-{seed}")
                out = await send(
                    http, self.urls, call, self.oracle, also_allowed=self.allowed, reused=reused
                )
                self.outcomes.append(out)
                reused = out.keep_alive
                if out.error is not None:
                    await asyncio.sleep(0.05)  # no busy loop against a closed port

    async def stop(self) -> list[Outcome]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes


async def _drill(
    stack: LiveStack,
    name: str,
    clients: int,
    seed: int,
    fault: Callable[[DrillReport], Awaitable[None]],
    *,
    allow_503: bool = False,
    settle_s: float,
) -> DrillReport:
    report = DrillReport(name, [], allow_503=allow_503)
    load = _Load(stack, clients, seed, allow_503)
    await asyncio.sleep(settle_s)
    try:
        await fault(report)
    finally:
        report.outcomes = await load.stop()
    return report


def _mark(report: DrillReport, event: str) -> None:
    report.events[event] = time.monotonic()


async def _kill(stack: LiveStack, t: Timings, member: str, clients: int) -> DrillReport:
    async def fault(report: DrillReport) -> None:
        _mark(report, "fault")
        await asyncio.to_thread(stack.kill, member)
        await asyncio.sleep(t.down_s)
        _mark(report, "restart")
        stack.restart(member)
        await asyncio.to_thread(stack.wait_member_ready, member)
        _mark(report, "ready")
        await asyncio.sleep(t.after_s)

    return await _drill(stack, f"kill {member}", clients, 100, fault, settle_s=t.settle_s)


async def _hang(stack: LiveStack, t: Timings, member: str, clients: int) -> DrillReport:
    hang_s = (stack.member_timeout_s or 4.0) + t.hang_margin_s

    async def fault(report: DrillReport) -> None:
        _mark(report, "fault")
        stack.pause(member)
        await asyncio.sleep(hang_s)
        _mark(report, "restart")
        stack.resume(member)
        await asyncio.to_thread(stack.wait_member_ready, member)
        _mark(report, "ready")
        await asyncio.sleep(t.after_s)

    return await _drill(stack, f"hang {member}", clients, 200, fault, settle_s=t.settle_s)


async def _all_down(stack: LiveStack, t: Timings, clients: int) -> DrillReport:
    async def fault(report: DrillReport) -> None:
        _mark(report, "fault")
        for mid in stack.model_ids:
            await asyncio.to_thread(stack.kill, mid)
        await asyncio.sleep(t.down_s)
        _mark(report, "restart")
        for mid in stack.model_ids:
            stack.restart(mid)
        for mid in stack.model_ids:
            await asyncio.to_thread(stack.wait_member_ready, mid)
        _mark(report, "ready")  # the last member is ready
        await asyncio.sleep(t.after_s)

    return await _drill(
        stack, "all members down", clients, 300, fault, allow_503=True, settle_s=t.settle_s
    )


async def _gateway_sigterm(stack: LiveStack, t: Timings, clients: int) -> DrillReport:
    assert stack.gateway is not None
    process = stack.gateway.process

    async def fault(report: DrillReport) -> None:
        _mark(report, "sigterm")
        stack.terminate_gateway()
        report.gateway_exit = await asyncio.to_thread(process.wait, 60)
        _mark(report, "exited")
        await asyncio.sleep(t.refused_s)

    report = await _drill(stack, "gateway SIGTERM", clients, 400, fault, settle_s=t.settle_s)
    await asyncio.to_thread(stack.start_gateway)  # the stack serves again for what follows
    return report


DRILLS = ("kill", "hang", "all-down", "gateway-sigterm")


def run_drills(
    stack: LiveStack,
    names: tuple[str, ...] = DRILLS,
    *,
    clients: int = 3,
    sigterm_clients: int = 8,
    member: str | None = None,
    timings: Timings = Timings(),
) -> list[DrillReport]:
    """Run the drills ``names`` (of :data:`DRILLS`) in order; one report each."""
    target = member or stack.model_ids[0]

    async def run_all() -> list[DrillReport]:
        reports = []
        for name in names:
            if name == "kill":
                reports.append(await _kill(stack, timings, target, clients))
            elif name == "hang":
                reports.append(await _hang(stack, timings, target, clients))
            elif name == "all-down":
                reports.append(await _all_down(stack, timings, clients))
            elif name == "gateway-sigterm":
                reports.append(await _gateway_sigterm(stack, timings, sigterm_clients))
            else:
                raise ValueError(f"unknown drill {name!r}; choose from {', '.join(DRILLS)}")
        return reports

    return asyncio.run(run_all())
