"""From frames to per-frame scores: decode, optional face crop, debug copy, batcher.

Shared by the legacy and the OIP endpoints so both give identical probabilities
for identical frames. CPU work (header checks, decoding, cropping, resizing) runs
in one worker-thread call per request, on the app's decode pool (one thread per
CPU); scoring goes through the dynamic batcher.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from wma_wire.frames import (
    FrameLimits,
    check_frames,
    check_request_pixels,
    open_frame,
    validate_pixels,
)
from wma_wire.protocol import FRAME_STATUSES, UNSCORED

from wma_model_server.backends import Backend
from wma_model_server.batching import DynamicBatcher
from wma_model_server.faces import crop_largest_face
from wma_model_server.imaging import decode_image
from wma_model_server.telemetry import ServerMetrics

__all__ = ["FrameScores", "ScoringPipeline"]

Frame = np.ndarray[Any, np.dtype[np.uint8]]
T = TypeVar("T")
OK, UNDECODABLE, NO_FACE = FRAME_STATUSES
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
    ) -> None:
        self.backend = backend
        self.batcher = batcher
        self.limits = limits
        self.metrics = metrics
        self.debug_dir = debug_dir
        self.decoder = decoder  # None: asyncio's default pool

    async def score_encoded(
        self, frames: Sequence[bytes], *, recrop: bool, debug: bool
    ) -> FrameScores:
        """Validate (4xx on a breach), decode and score encoded JPEG/PNG frames."""
        # Cheap (no image parsing), and first: a request over max_files is a 413, not a 429.
        formats = check_frames(frames, self.limits)
        save = debug and self.debug_dir is not None
        prepare = partial(self._prepare_encoded, frames, formats, recrop, save)
        return await self._score(len(frames), prepare)

    async def score_pixels(
        self, pixels: np.ndarray[Any, np.dtype[np.uint8]], *, recrop: bool
    ) -> FrameScores:
        """Validate (4xx on a breach) and score decoded RGB uint8 ``[N, H, W, 3]`` frames."""
        validate_pixels(pixels.shape, self.limits)
        return await self._score(
            len(pixels), partial(self._prepare, list(pixels), _as_is, recrop, False)
        )

    async def _score(self, count: int, prepare: Callable[[], _Prepared]) -> FrameScores:
        with self.batcher.admission(count) as admission:  # 429 before any decoding
            loop = asyncio.get_running_loop()
            prepared, statuses = await loop.run_in_executor(self.decoder, prepare)
            probs = np.full(count, UNSCORED, dtype=np.float32)
            ok = [i for i, s in enumerate(statuses) if s == OK]
            if ok:
                probs[ok] = await admission.submit([prepared[i] for i in ok])
        for status in statuses:
            self.metrics.frames.labels(status=status).inc()
        return FrameScores(probs, statuses)

    def _prepare_encoded(
        self, frames: Sequence[bytes], formats: Sequence[str], recrop: bool, save: bool
    ) -> _Prepared:
        # Every header is read (and a 413 raised) before any frame is decoded.
        images = [
            open_frame(data, fmt, self.limits, index)
            for index, (data, fmt) in enumerate(zip(frames, formats, strict=True))
        ]
        check_request_pixels(images, self.limits)
        return self._prepare(images, decode_image, recrop, save)

    def _prepare(
        self, items: Sequence[T], decode: Callable[[T], Frame | None], recrop: bool, save: bool
    ) -> _Prepared:
        # One frame at a time from decode to prepare: only one full-size frame in memory.
        prepared: list[np.ndarray[Any, Any]] = []
        statuses: list[str] = []
        batch_id = uuid.uuid4().hex[:12]
        for index, item in enumerate(items):
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
