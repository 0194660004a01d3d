"""From frames to per-frame scores: decode, optional face crop, debug copy, batcher.

Shared by the legacy and the OIP endpoints so both give identical probabilities
for identical frames. CPU work (decoding, cropping, resizing) runs in a worker
thread; scoring goes through the dynamic batcher.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wma_model_server.backends import Backend
from wma_model_server.batching import DynamicBatcher
from wma_model_server.faces import crop_largest_face
from wma_model_server.imaging import FrameLimits, decode_frame, validate_frames
from wma_model_server.protocol import UNSCORED
from wma_model_server.telemetry import ServerMetrics

__all__ = ["FrameScores", "ScoringPipeline"]

Frame = np.ndarray[Any, np.dtype[np.uint8]]


@dataclass(frozen=True)
class FrameScores:
    """``probs`` float32 [N] (UNSCORED where not scored) and one status per frame."""

    probs: np.ndarray[Any, np.dtype[np.float32]]
    statuses: list[str]

    @property
    def scored(self) -> list[float]:
        return [float(p) for p, s in zip(self.probs, self.statuses, strict=True) if s == "ok"]


class ScoringPipeline:
    def __init__(
        self,
        backend: Backend,
        batcher: DynamicBatcher,
        limits: FrameLimits,
        metrics: ServerMetrics,
        debug_dir: Path | None,
    ) -> None:
        self.backend = backend
        self.batcher = batcher
        self.limits = limits
        self.metrics = metrics
        self.debug_dir = debug_dir

    async def score_encoded(
        self, frames: Sequence[bytes], *, recrop: bool, debug: bool
    ) -> FrameScores:
        """Validate (4xx on a breach), decode and score encoded JPEG/PNG frames."""
        await asyncio.to_thread(validate_frames, frames, self.limits)
        decoded = [lambda data=data: decode_frame(data, self.limits) for data in frames]
        return await self._score(decoded, recrop=recrop, debug=debug)

    async def score_pixels(self, pixels: Sequence[Frame], *, recrop: bool) -> FrameScores:
        """Score already-decoded RGB uint8 ``[H, W, 3]`` frames."""
        return await self._score([lambda p=p: p for p in pixels], recrop=recrop, debug=False)

    async def _score(self, sources: Sequence[Any], *, recrop: bool, debug: bool) -> FrameScores:
        save = debug and self.debug_dir is not None
        prepared, statuses = await asyncio.to_thread(self._prepare, sources, recrop, save)
        probs = np.full(len(sources), UNSCORED, dtype=np.float32)
        ok = [i for i, s in enumerate(statuses) if s == "ok"]
        if ok:
            probs[ok] = await self.batcher.submit([prepared[i] for i in ok])
        for status in statuses:
            self.metrics.frames.labels(status=status).inc()
        return FrameScores(probs, statuses)

    def _prepare(
        self, sources: Sequence[Any], recrop: bool, save: bool
    ) -> tuple[list[np.ndarray[Any, Any]], list[str]]:
        prepared: list[np.ndarray[Any, Any]] = []
        statuses: list[str] = []
        batch_id = uuid.uuid4().hex[:12]
        for index, source in enumerate(sources):
            frame: Frame | None = source()
            status = "ok"
            if frame is None:
                status = "undecodable"
            elif recrop:
                frame = crop_largest_face(frame)
                status = "ok" if frame is not None else "no_face"
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
