"""What one member's OIP reply means: scores, ``no_faces`` (every frame unscored) or ``error``."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest
from wma_fusion.breaker import CircuitBreaker
from wma_fusion.config import ModelEntry
from wma_fusion.upstream import MemberReply, call_member
from wma_wire.protocol import UNSCORED, encode_infer_response

ENTRY = ModelEntry(id="m1", endpoint="http://member:8000")  # type: ignore[arg-type]


def ask(probs: list[float]) -> MemberReply:
    def handler(request: httpx.Request) -> httpx.Response:
        content, headers = encode_infer_response(
            "m1", "r", {"probs": np.array(probs, dtype=np.float32)}, binary=True
        )
        return httpx.Response(200, content=content, headers=headers)

    async def run() -> MemberReply:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await call_member(
                client,
                ENTRY,
                CircuitBreaker(5, 10.0),
                [b"f"] * len(probs),
                request_id="r",
                deadline=time.monotonic() + 5,
                connect_retries=0,
            )

    return asyncio.run(run())


def test_scored_and_unscored_frames_are_read_as_scores_and_no_faces() -> None:
    reply = ask([0.25, UNSCORED, 1.0])
    assert (reply.status, reply.probs) == ("ok", (0.25, 1.0))
    assert ask([UNSCORED, UNSCORED]).status == "no_faces"


@pytest.mark.parametrize(
    "probs",
    [[float("nan")], [float("nan"), 0.5], [float("inf")], [-0.5], [1.5], [float("-inf")]],
    ids=["all-nan", "one-nan", "inf", "negative", "over-one", "minus-inf"],
)
def test_a_non_finite_or_out_of_range_probability_is_a_member_error(probs: list[float]) -> None:
    reply = ask(probs)
    assert reply.status == "error", reply
    assert reply.error is not None and "outside [0, 1]" in reply.error
