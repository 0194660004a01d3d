"""The SDK: ParticipantTracker's banner hysteresis, FusionClient's local checks."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from wma_core import Banner
from wma_fusion.client import FusionClient, ParticipantTracker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answer(banner: str) -> dict[str, str]:
    verdict = {"GREEN": "REAL", "YELLOW": "UNCERTAIN", "RED": "FAKE", "NONE": "NO_FACE"}[banner]
    return {"verdict": verdict, "banner": banner}


def feed(tracker: ParticipantTracker, banners: list[str], pid: str = "p") -> list[str]:
    shown = []
    for b in banners:
        update = tracker.update(pid, answer(b))
        shown.append(update.banner.value if update else "-")
    return shown


def test_escalates_at_once_and_calms_down_after_n_calmer_answers() -> None:
    tracker = ParticipantTracker(calm_after=3)
    shown = feed(tracker, ["GREEN", "RED", "GREEN", "GREEN", "GREEN", "GREEN"])
    assert shown == ["GREEN", "RED", "RED", "RED", "GREEN", "GREEN"]


def test_a_same_level_answer_restarts_the_calm_down_count() -> None:
    tracker = ParticipantTracker(calm_after=2)
    shown = feed(tracker, ["RED", "GREEN", "RED", "GREEN", "YELLOW", "GREEN"])
    # after RED, GREEN: calm count 1; RED resets; GREEN, YELLOW: 2 calmer -> the worse of them
    assert shown == ["RED", "RED", "RED", "RED", "YELLOW", "YELLOW"]


def test_no_face_answers_change_nothing() -> None:
    tracker = ParticipantTracker(calm_after=1)
    assert feed(tracker, ["YELLOW", "NONE", "NONE"]) == ["YELLOW", "-", "-"]
    assert tracker.banner("p") is Banner.YELLOW


def test_participants_are_independent_and_forgotten_when_idle() -> None:
    clock = Clock()
    tracker = ParticipantTracker(calm_after=2, idle_ttl_s=120.0, clock=clock)
    feed(tracker, ["RED"], pid="a")
    feed(tracker, ["GREEN"], pid="b")
    assert (tracker.banner("a"), tracker.banner("b")) == (Banner.RED, Banner.GREEN)
    clock.now = 119.0
    feed(tracker, ["GREEN"], pid="b")
    assert len(tracker) == 2
    clock.now = 121.0
    assert tracker.banner("a") is Banner.NONE  # silent for 121 s: forgotten
    assert tracker.banner("b") is Banner.GREEN
    update = tracker.update("a", answer("GREEN"))
    assert update is not None and update.banner is Banner.GREEN and update.changed


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="calm_after"):
        ParticipantTracker(calm_after=0)


def test_no_face_answers_neither_count_towards_nor_break_a_calm_down() -> None:
    tracker = ParticipantTracker(calm_after=3)
    shown = feed(tracker, ["RED", "GREEN", "NONE", "GREEN", "NONE", "GREEN"])
    assert shown == ["RED", "RED", "-", "RED", "-", "GREEN"]


def test_a_worse_answer_during_a_calm_down_escalates_at_once_and_restarts_it() -> None:
    tracker = ParticipantTracker(calm_after=2)
    shown = feed(tracker, ["YELLOW", "GREEN", "RED", "GREEN", "GREEN"])
    assert shown == ["YELLOW", "YELLOW", "RED", "RED", "GREEN"]


@pytest.mark.parametrize("n", [1, 2, 5])
def test_calm_down_takes_exactly_n_calmer_answers(n: int) -> None:
    tracker = ParticipantTracker(calm_after=n)
    shown = feed(tracker, ["RED"] + ["GREEN"] * n)
    assert shown == ["RED"] * n + ["GREEN"]
    update = tracker.update("p", answer("GREEN"))
    assert update is not None and not update.changed


def test_a_participant_is_forgotten_once_silent_for_the_idle_ttl() -> None:
    clock = Clock()
    tracker = ParticipantTracker(idle_ttl_s=30.0, clock=clock)
    feed(tracker, ["RED"])
    clock.now = 10.0
    feed(tracker, ["NONE"])  # a NO_FACE answer still shows the participant is there
    clock.now = 39.9
    assert tracker.banner("p") is Banner.RED  # reading does not keep it alive
    clock.now = 40.0  # 30 s after the last answer
    assert tracker.forget_idle() == ["p"] and len(tracker) == 0
    assert tracker.banner("p") is Banner.NONE


def test_process_frames_refuses_an_empty_batch_before_sending() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(415, json={"error": "must be multipart/form-data"})

    async def call() -> None:
        async with FusionClient("http://gw", transport=httpx.MockTransport(handler)) as client:
            await client.process_frames([], "p1")

    with pytest.raises(ValueError, match="at least one frame"):
        asyncio.run(call())
    assert sent == []
