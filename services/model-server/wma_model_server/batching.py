"""Dynamic batching: frames of concurrent requests share one forward pass.

A pass starts as soon as the model is free and takes every waiting frame, up to
``max_batch``: an idle server adds no latency, and frames that arrive while a pass
runs are coalesced into the next one, so batches grow with load. With
``max_delay_s`` > 0 an idle model also waits that long for more frames first, like
Triton's ``max_queue_delay_microseconds`` (off by default). Admission is bounded
by ``max_queue_frames`` (admitted, not yet scored); beyond it
:class:`OverloadedError` (429) is raised at once instead of letting latency grow.
A request is admitted before its frames are decoded and prepared, so an
overloaded server spends no CPU on frames it will refuse. The forward pass runs
in one dedicated worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from wma_model_server.backends import Backend
from wma_model_server.exceptions import InferenceError, NotReadyError, OverloadedError
from wma_model_server.telemetry import ServerMetrics

__all__ = ["Admission", "DynamicBatcher"]

log = logging.getLogger(__name__)


@dataclass
class _Segment:
    inputs: Sequence[np.ndarray[Any, Any]]
    future: asyncio.Future[np.ndarray[Any, Any]]


class Admission:
    """Queue capacity held for one request's frames until they are submitted."""

    def __init__(self, batcher: DynamicBatcher, frames: int) -> None:
        self.batcher = batcher
        self.frames = frames

    async def submit(self, inputs: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        """Fake probabilities of prepared frames, scored in shared forward passes."""
        if len(inputs) > self.frames:
            raise ValueError(f"{len(inputs)} frames submitted, {self.frames} admitted")
        if not inputs:
            return np.zeros(0, dtype=np.float32)
        self.frames -= len(inputs)
        return await self.batcher._enqueue(inputs)


class DynamicBatcher:
    def __init__(
        self,
        backend: Backend,
        executor: ThreadPoolExecutor,
        metrics: ServerMetrics,
        *,
        max_batch: int,
        max_delay_s: float,
        max_queue_frames: int,
    ) -> None:
        self.backend = backend
        self.executor = executor
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.max_queue_frames = max_queue_frames
        self._pending: deque[_Segment] = deque()
        self._admitted = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wma-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._pending:
            segment = self._pending.popleft()
            if not segment.future.done():
                segment.future.set_exception(NotReadyError("model server is shutting down"))

    @contextmanager
    def admission(self, frames: int) -> Iterator[Admission]:
        """Hold queue capacity for ``frames`` frames of one request, or refuse at once.

        Raises :class:`OverloadedError` (429) when they do not fit, before the
        caller spends any work on them. Capacity not handed to the queue through
        :meth:`Admission.submit` (unscorable frames, an error) is given back on exit.
        """
        if self._admitted + frames > self.max_queue_frames:
            raise OverloadedError(
                f"queue full: {self._admitted} frames waiting, max_queue_frames="
                f"{self.max_queue_frames}; retry later",
                retry_after_s=max(1, round(self.max_delay_s + 0.5)),
            )
        self._admit(frames)
        held = Admission(self, frames)
        try:
            yield held
        finally:
            self._admit(-held.frames)

    async def _enqueue(self, inputs: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        # The frames are already admitted; from here the queue gives their capacity back.
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(inputs), self.max_batch):
            segment = _Segment(inputs[start : start + self.max_batch], loop.create_future())
            self._pending.append(segment)
            futures.append(segment.future)
        self._wakeup.set()
        parts = await asyncio.gather(*futures)
        return np.concatenate(parts).astype(np.float32)

    def _admit(self, frames: int) -> None:
        self._admitted += frames
        self.metrics.queue_frames.set(self._admitted)

    def _waiting_frames(self) -> int:
        return sum(len(s.inputs) for s in self._pending)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = loop.time() + self.max_delay_s
            while self._waiting_frames() < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take_batch()
            if batch:
                await self._forward(batch)

    def _take_batch(self) -> list[_Segment]:
        batch: list[_Segment] = []
        frames = 0
        while self._pending:
            segment = self._pending[0]
            if segment.future.done():  # the caller went away (cancelled)
                self._pending.popleft()
                self._admit(-len(segment.inputs))
                continue
            if batch and frames + len(segment.inputs) > self.max_batch:
                break
            batch.append(self._pending.popleft())
            frames += len(segment.inputs)
        return batch

    async def _forward(self, batch: list[_Segment]) -> None:
        inputs = [x for segment in batch for x in segment.inputs]
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            probs = await loop.run_in_executor(self.executor, self.backend.predict, inputs)
        except Exception as exc:  # a backend failure fails these requests, not the batcher
            log.exception("forward pass of %d frames failed", len(inputs))
            for segment in batch:
                if not segment.future.done():
                    segment.future.set_exception(exc)
        else:
            self.metrics.inference.observe(time.perf_counter() - started)
            self.metrics.batch_size.observe(len(inputs))
            offset = 0
            for segment in batch:
                n = len(segment.inputs)
                part = np.asarray(probs[offset : offset + n], dtype=np.float32)
                offset += n
                if segment.future.done():
                    continue
                if np.isfinite(part).all():
                    segment.future.set_result(part)
                else:  # only the requests that got NaN/inf fail; JSON could not carry it
                    log.error("model produced non-finite probabilities for %d frames", n)
                    segment.future.set_exception(
                        InferenceError("the model produced a non-finite probability (NaN/inf)")
                    )
        finally:
            self._admit(-len(inputs))
