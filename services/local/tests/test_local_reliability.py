"""The soak and the drills, bounded, against a real local stack (every service a process).

The seed's production gate, "no errors or exceptions in 1000+ test calls", is
:func:`test_a_thousand_good_calls_get_the_cores_answer_without_an_error`. The
members' timeout in the gateway config is 1 s here (the default is 4 s) so a hung
member shows within the bounded drill. ``make soak`` and ``make drills`` run the
long versions (docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from wma_local.drills import DrillReport, Timings, run_drills
from wma_local.livestack import LiveStack
from wma_local.soak import run_soak
from wma_local.traffic import MALFORMED

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
SHORT = Timings(settle_s=0.5, down_s=1.0, hang_margin_s=1.0, after_s=2.5, refused_s=0.3)


@pytest.fixture(scope="module")
def stack() -> Iterator[LiveStack]:
    with LiveStack(member_timeout_s=1.0) as running:
        yield running


def drill(stack: LiveStack, name: str) -> DrillReport:
    (report,) = run_drills(stack, (name,), clients=3, sigterm_clients=8, timings=SHORT)
    assert report.problems == [], "\n".join(report.lines()) + "\n" + stack.log_tails()
    assert report.lost == []
    return report


def test_a_bounded_soak_gets_only_expected_answers_and_reports_memory(stack: LiveStack) -> None:
    report = run_soak(stack, calls=200, clients=8, bad_fraction=0.2, seed=5)
    assert report.problems == [], "\n".join(report.lines())
    assert {o.call.kind for o in report.outcomes if not o.call.good} == set(MALFORMED)
    assert len(report.outcomes) == 200
    assert {o.verdict for o in report.good} == {"REAL", "UNCERTAIN", "FAKE"}
    assert set(report.rss_kib) == {"start", "warm", "end"}
    assert set(report.rss_kib["end"]) == {"gateway", *stack.model_ids}
    assert all(kib > 0 for kib in report.rss_kib["end"].values())
    assert report.latency_ms()[50] > 0 and "unexpected answers: 0" in report.lines()


def test_a_thousand_good_calls_get_the_cores_answer_without_an_error(stack: LiveStack) -> None:
    report = run_soak(stack, calls=1000, clients=8, bad_fraction=0.0, seed=6)
    assert report.problems == [], "\n".join(report.lines())
    assert len(report.good) == 1000
    assert all(o.status == 200 and o.complete for o in report.good)


def test_a_killed_member_degrades_answers_by_the_interval_rule_then_recovers(
    stack: LiveStack,
) -> None:
    report = drill(stack, "kill")
    assert sum(o.degraded for o in report.outcomes) > 0  # the fault was seen
    assert report.recovery_s() is not None, "\n".join(report.lines())


def test_a_hung_member_degrades_answers_then_recovers_on_resume(stack: LiveStack) -> None:
    report = drill(stack, "hang")
    assert sum(o.degraded for o in report.outcomes) > 0
    assert report.recovery_s() is not None, "\n".join(report.lines())


def test_with_all_members_down_answers_are_503_json_then_complete_again(
    stack: LiveStack,
) -> None:
    report = drill(stack, "all-down")
    assert sum(o.status == 503 for o in report.outcomes) > 0
    assert report.recovery_s() is not None, "\n".join(report.lines())


def test_a_gateway_sigterm_answers_every_request_in_flight_and_loses_none(
    stack: LiveStack,
) -> None:
    report = drill(stack, "gateway-sigterm")
    assert report.gateway_exit == 0
    flight = report.in_flight_at_sigterm
    assert flight and all(o.status == 200 and o.problem is None for o in flight)
    assert report.refused  # the clients kept trying after it had stopped
    after = run_soak(stack, calls=20, clients=2, bad_fraction=0.0)  # started again
    assert after.problems == []
