"""A lone request is decoded in one job per idle decode thread; results keep their order."""

from __future__ import annotations

from typing import Any

import pytest
from wma_model_server.pipeline import ScoringPipeline

pytestmark = pytest.mark.anyio


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(first frame, frames) of every decode job."""
    jobs: list[tuple[int, int]] = []
    original = ScoringPipeline._prepare

    def prepare(self: ScoringPipeline, items: Any, *args: Any) -> Any:
        jobs.append((args[-1], len(items)))
        return original(self, items, *args)

    monkeypatch.setattr(ScoringPipeline, "_prepare", prepare)
    return jobs


@pytest.mark.parametrize(
    ("decode_threads", "expected"),
    [(1, [(0, 24)]), (2, [(0, 12), (12, 12)]), (3, [(0, 8), (8, 8), (16, 8)])],
)
async def test_a_lone_request_is_split_over_the_idle_decode_threads_in_order(
    serve: Any,
    png: Any,
    form: Any,
    monkeypatch: pytest.MonkeyPatch,
    decode_threads: int,
    expected: list[tuple[int, int]],
) -> None:
    jobs = _recording(monkeypatch)
    values = list(range(10, 250, 10))  # 24 frames, each its own score
    async with serve(decode_threads=decode_threads, max_files=32) as client:
        jobs.clear()  # not the warm-up
        r = await client.post("/check_frame_batch", files=form([png(v) for v in values]))
    assert r.status_code == 200
    assert r.json()["probs"] == pytest.approx([v / 255 for v in values])
    assert sorted(jobs) == expected


async def test_a_small_request_stays_one_job(
    serve: Any, png: Any, form: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = _recording(monkeypatch)
    async with serve(decode_threads=2) as client:
        jobs.clear()
        r = await client.post("/check_frame_batch", files=form([png(v) for v in (51, 102, 153)]))
    assert r.json()["probs"] == pytest.approx([0.2, 0.4, 0.6])
    assert jobs == [(0, 3)]
