"""From frames to per-frame scores: decode, optional face crop, debug copy, batcher.

Shared by the legacy and the OIP endpoints so both give identical probabilities
for identical frames. CPU work (header checks, decoding, cropping, resizing) runs
on the app's decode pool (one thread per CPU), never on the event loop: one job
per request while the pool is busy, a request split over the idle threads when it
is not; scoring goes through the dynamic batcher.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from wma_wire.frames import (
    FrameLimits,
    OpenedFrame,
    check_frames,
    check_request_pixels,
    open_frame,
    validate_pixels,
)
from wma_wire.imaging import decode_image
from wma_wire.protocol import FRAME_STATUSES, UNSCORED

from wma_model_server.backends import Backend
from wma_model_server.batching import DynamicBatcher
from wma_model_server.faces import crop_largest_face
from wma_model_server.telemetry import ServerMetrics

__all__ = ["FrameScores", "ScoringPipeline"]

Frame = np.ndarray[Any, np.dtype[np.uint8]]
T = TypeVar("T")
OK, UNDECODABLE, NO_FACE = FRAME_STATUSES
# A request is split over idle decode threads in jobs of at least this many frames.
MIN_FRAMES_PER_JOB = 8
# per-frame backend inputs (empty where not scored) and per-frame statuses
_Prepared = tuple[list[np.ndarray[Any, Any]], list[str]]


def _as_is(frame: Frame) -> Frame:
    return frame


@dataclass(frozen=True)
class FrameScores:
    """``probs`` float32 [N] (UNSCORED where not scored) and one status per frame."""

    probs: np.ndarray[Any, np.dtype[np.float32]]
    statuses: list[str]

    @property
    def scored(self) -> list[float]:
        return [float(p) for p, s in zip(self.probs, self.statuses, strict=True) if s == OK]


class ScoringPipeline:
    def __init__(
        self,
        backend: Backend,
        batcher: DynamicBatcher,
        limits: FrameLimits,
        metrics: ServerMetrics,
        debug_dir: Path | None,
        decoder: Executor | None = None,
        decode_threads: int = 1,
    ) -> None:
        self.backend = backend
        self.batcher = batcher
        self.limits = limits
        self.metrics = metrics
        self.debug_dir = debug_dir
        self.decoder = decoder  # None: asyncio's default pool
        self.decode_threads = decode_threads  # the decoder's threads
        self._decoding = 0  # decode jobs submitted and not finished

    async def score_encoded(
        self, frames: Sequence[bytes], *, recrop: bool, debug: bool
    ) -> FrameScores:
        """Validate (4xx on a breach), decode and score encoded JPEG/PNG frames."""
        # Cheap (no image parsing), and first: a request over max_files is a 413, not a 429.
        formats = check_frames(frames, self.limits)
        save = debug and self.debug_dir is not None

        def opened() -> list[OpenedFrame | None]:
            # Every header is read (and a 413 raised) before any frame is decoded.
            images = [
                open_frame(data, fmt, self.limits, index)
                for index, (data, fmt) in enumerate(zip(frames, formats, strict=True))
            ]
            check_request_pixels(images, self.limits)
            return images

        return await self._score(len(frames), opened, decode_image, recrop, save)

    async def score_pixels(
        self, pixels: np.ndarray[Any, np.dtype[np.uint8]], *, recrop: bool
    ) -> FrameScores:
        """Validate (4xx on a breach) and score decoded RGB uint8 ``[N, H, W, 3]`` frames."""
        validate_pixels(pixels.shape, self.limits)
        return await self._score(len(pixels), lambda: list(pixels), _as_is, recrop, False)

    async def _score(
        self,
        count: int,
        items: Callable[[], Sequence[T]],
        decode: Callable[[T], Frame | None],
        recrop: bool,
        save: bool,
    ) -> FrameScores:
        with self.batcher.admission(count) as admission:  # 429 before any decoding
            prepared, statuses = await self._prepare_all(count, items, decode, recrop, save)
            probs = np.full(count, UNSCORED, dtype=np.float32)
            ok = [i for i, s in enumerate(statuses) if s == OK]
            if ok:
                probs[ok] = await admission.submit([prepared[i] for i in ok])
        for status in statuses:
            self.metrics.frames.labels(status=status).inc()
        return FrameScores(probs, statuses)

    async def _prepare_all(
        self,
        count: int,
        items: Callable[[], Sequence[T]],
        decode: Callable[[T], Frame | None],
        recrop: bool,
        save: bool,
    ) -> _Prepared:
        """Open ``items()`` and decode and prepare them on the decode pool (never on the
        event loop): one job per request while the pool is busy (requests finish in
        turn), split over the idle threads when it is not (a lone request uses every
        core; the headers are read in a first job, so that a 413 still comes before
        any decoding)."""
        loop = asyncio.get_running_loop()
        batch_id = uuid.uuid4().hex[:12]
        jobs = max(1, min(self.decode_threads - self._decoding, count // MIN_FRAMES_PER_JOB))
        self._decoding += jobs
        try:
            if jobs == 1:
                return await loop.run_in_executor(
                    self.decoder, lambda: self._prepare(items(), decode, recrop, save, batch_id, 0)
                )
            opened = await loop.run_in_executor(self.decoder, items)
            bounds = [len(opened) * k // jobs for k in range(jobs + 1)]
            parts = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        self.decoder,
                        self._prepare,
                        opened[lo:hi],
                        decode,
                        recrop,
                        save,
                        batch_id,
                        lo,
                    )
                    for lo, hi in itertools.pairwise(bounds)
                )
            )
        finally:
            self._decoding -= jobs
        return [x for part in parts for x in part[0]], [s for part in parts for s in part[1]]

    def _prepare(
        self,
        items: Sequence[T],
        decode: Callable[[T], Frame | None],
        recrop: bool,
        save: bool,
        batch_id: str,
        first: int,
    ) -> _Prepared:
        # One frame at a time from decode to prepare: only one full-size frame in memory.
        prepared: list[np.ndarray[Any, Any]] = []
        statuses: list[str] = []
        for index, item in enumerate(items, start=first):
            frame = decode(item)
            status = OK
            if frame is None:
                status = UNDECODABLE
            elif recrop:
                frame = crop_largest_face(frame)
                status = OK if frame is not None else NO_FACE
            if frame is None:
                prepared.append(np.zeros(0))
            else:
                if save:
                    self._save_debug(frame, f"{batch_id}-{index:03d}")
                prepared.append(self.backend.prepare(frame))
            statuses.append(status)
        return prepared, statuses

    def _save_debug(self, frame: Frame, name: str) -> None:
        # Only with the operator's debug_dir setting: frames are biometric data.
        assert self.debug_dir is not None
        self.debug_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(self.debug_dir / f"{self.backend.model_id}-{name}.png")
