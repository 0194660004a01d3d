"""The judging of the soak and the drills, without a stack: each check can fail.

The oracle against answers built from the core, :func:`wma_local.load.send` over a
mock transport (statuses, error bodies, refused and lost connections), the soak's
call plan, and a drill report's rules (lost, refused, 503, recovery time).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
from wma_core.bundle import load_bundle
from wma_local.drills import DrillReport
from wma_local.livestack import BIASES
from wma_local.load import Outcome, send
from wma_local.oracle import Oracle
from wma_local.soak import plan_calls
from wma_local.stack import DEFAULT_BUNDLE, DEFAULT_MODEL_IDS
from wma_local.traffic import MALFORMED, Call, good_call, malformed_call

ORACLE = Oracle(load_bundle(DEFAULT_BUNDLE), BIASES)
FAKE_LEVELS = (200, 205, 210, 220)
REAL_LEVELS = (40, 45, 50, 60)


def answer(levels: tuple[int, ...], failed: tuple[str, ...] = ()) -> dict[str, Any]:
    """The answer the gateway should give when the members ``failed`` did not answer."""
    present = set(ORACLE.bundle.models) - set(failed)
    fused = ORACLE.fused(levels, present)
    decision = ORACLE.decision(levels, present)
    scores = ORACLE.calibrated(levels)
    return {
        "verdict": decision.verdict.value,
        "banner": decision.banner.value,
        "confidence": decision.confidence.value,
        "degraded": bool(failed),
        "fusion_score": fused.score,
        "fusion_interval": list(fused.interval),
        "models": {
            m: {"status": "timeout" if m in failed else "ok", "calibrated": None}
            | ({} if m in failed else {"calibrated": scores[m]})
            for m in ORACLE.bundle.models
        },
    }


def test_the_oracle_accepts_the_cores_answers_complete_or_degraded() -> None:
    for levels in (FAKE_LEVELS, REAL_LEVELS, (140, 145, 150)):
        assert ORACLE.check(answer(levels), levels) is None
        assert ORACLE.check(answer(levels, failed=("1mjgo9w1",)), levels) is None
    assert ORACLE.decision(FAKE_LEVELS).verdict == "FAKE"
    assert ORACLE.decision(REAL_LEVELS).verdict == "REAL"


def test_the_oracle_catches_a_wrong_verdict_score_or_flag() -> None:
    body = answer(REAL_LEVELS) | {"verdict": "FAKE", "banner": "RED"}
    assert "core says REAL/GREEN" in (ORACLE.check(body, REAL_LEVELS) or "")
    assert "degraded" in (ORACLE.check(answer(FAKE_LEVELS) | {"degraded": True}, FAKE_LEVELS) or "")
    wrong = answer(FAKE_LEVELS)
    wrong["models"]["dfsesrgu"]["calibrated"] += 1e-6
    assert "dfsesrgu calibrated" in (ORACLE.check(wrong, FAKE_LEVELS) or "")
    assert "fusion_score" in (
        ORACLE.check(answer(FAKE_LEVELS) | {"fusion_score": 0.5}, FAKE_LEVELS) or ""
    )


def test_a_degraded_answer_must_follow_the_interval_rule() -> None:
    # three members missing: the interval straddles the band, the only verdict is UNCERTAIN
    failed = ("1mjgo9w1", "dfsesrgu", "4vtny88m")
    honest = answer(FAKE_LEVELS, failed)
    assert honest["verdict"] == "UNCERTAIN"
    claimed = honest | {"verdict": "FAKE", "banner": "RED", "confidence": "High"}
    assert "core says UNCERTAIN" in (ORACLE.check(claimed, FAKE_LEVELS) or "")
    # the full ensemble's verdict from the present members' scores alone is not enough either
    present_only = answer(FAKE_LEVELS) | {"models": honest["models"]}
    assert ORACLE.check(present_only, FAKE_LEVELS) is not None


def _send(call: Call, handler: Any, reused: bool = False) -> Outcome:
    async def run() -> Outcome:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            urls = {"gateway": "http://gw"} | {m: f"http://{m}" for m in DEFAULT_MODEL_IDS}
            return await send(client, urls, call, ORACLE, reused=reused)

    return asyncio.run(run())


def test_send_judges_error_answers_by_status_and_json_body() -> None:
    bad = malformed_call(random.Random(1), DEFAULT_MODEL_IDS, "truncated_body")
    ok = _send(bad, lambda r: httpx.Response(400, json={"error": "incomplete body"}))
    assert ok.problem is None and ok.status == 400
    crash = _send(bad, lambda r: httpx.Response(500, text="Internal Server Error"))
    assert "500, expected [400]" in (crash.problem or "")
    text = _send(bad, lambda r: httpx.Response(400, text="bad"))
    assert "text/plain" in (text.problem or "")
    nokey = _send(bad, lambda r: httpx.Response(400, json={"detail": "x"}))
    assert "'error'" in (nokey.problem or "")


def test_send_tells_a_refused_connection_from_a_lost_request() -> None:
    call = good_call(random.Random(2))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected", request=request)

    refused = _send(call, refuse)
    assert refused.refused and not refused.lost
    lost = _send(call, drop)
    assert lost.lost and not lost.refused and "RemoteProtocolError" in (lost.error or "")
    right = _send(call, lambda r: httpx.Response(200, json=answer(call.levels)))
    assert right.problem is None and right.complete
    wrong = _send(call, lambda r: httpx.Response(200, json=answer(call.levels) | {"banner": "X"}))
    assert wrong.problem is not None and not wrong.complete


def test_a_request_on_an_idle_connection_the_server_closed_is_repeated_once() -> None:
    call = good_call(random.Random(4))
    tries: list[int] = []

    def closed_then_answer(request: httpx.Request) -> httpx.Response:
        tries.append(1)
        if len(tries) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json=answer(call.levels), headers={"connection": "close"})

    repeated = _send(call, closed_then_answer, reused=True)
    assert repeated.retried and repeated.complete and len(tries) == 2
    assert not repeated.keep_alive  # the answer said Connection: close
    tries.clear()
    fresh = _send(call, closed_then_answer, reused=False)  # a new connection: not repeated
    assert fresh.lost and not fresh.retried and len(tries) == 1

    def always_reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("reset")

    twice = _send(call, always_reset, reused=True)
    assert twice.lost and twice.retried  # repeated once only, then lost


def test_the_soak_plan_mixes_every_malformed_kind_into_good_calls() -> None:
    plan = plan_calls(2000, 0.05, DEFAULT_MODEL_IDS, seed=3)
    bad = [c for c in plan if not c.good]
    assert 60 <= len(bad) <= 140
    assert {c.kind for c in bad} == set(MALFORMED)
    assert all(c.expect and min(c.expect) >= 400 for c in bad)
    assert plan == plan_calls(2000, 0.05, DEFAULT_MODEL_IDS, seed=3)  # reproducible


def _outcome(sent: float, done: float, **kw: Any) -> Outcome:
    return Outcome(good_call(random.Random(0)), sent, done, **kw)


def test_a_drill_report_flags_lost_refused_and_unexpected_503() -> None:
    report = DrillReport(
        "d",
        [
            _outcome(0.0, 0.1, status=200),
            _outcome(0.2, 0.3, error="ReadError: x"),
            _outcome(0.4, 0.5, error="ConnectError", refused=True),
            _outcome(0.6, 0.7, status=503),
            _outcome(0.8, 0.9, status=200, retried=True),
        ],
    )
    assert len(report.lost) == 1 and len(report.refused) == 1
    assert len(report.problems) == 4
    report.allow_503 = True
    report.events["sigterm"] = 0.3  # refusals and repeats after the SIGTERM are allowed
    assert report.problems == ["lost: ReadError: x"]


def test_recovery_is_timed_from_ready_to_the_first_of_only_complete_answers() -> None:
    outcomes = [
        _outcome(0.5, 0.9, status=200, degraded=True),
        _outcome(1.0, 1.2, status=200, degraded=True),
        _outcome(1.1, 1.3, status=200),
        _outcome(1.2, 1.5, status=200, degraded=True),  # not yet complete for good
        _outcome(1.4, 1.8, status=200),
        _outcome(1.6, 1.9, status=200),
    ]
    report = DrillReport("d", outcomes, events={"ready": 1.0})
    assert report.recovery_s() == pytest.approx(0.8)
    never = DrillReport("d", outcomes[:4], events={"ready": 1.0})
    assert never.recovery_s() is None
