"""Decoded frames for members on the gateway's host (``fanout.shared_memory``).

Each member decodes every frame it is sent, so four members decode each JPEG
four times: on one host that is most of a request's CPU. With the option on,
:class:`PixelStager` decodes a request's frames once, exactly as a model server
does (:func:`wma_wire.imaging.decode_image`, so every probability is the same),
into a slot of its :class:`~wma_wire.shm.PixelArena`, and the OIP call names the
slot instead of carrying the frames (see :mod:`wma_fusion.upstream`).

A request goes encoded instead, as without the option, when its frames do not
all decode to one size (a member then reports each frame's own status), when it
is larger than a slot, or when every slot is held. Decoding runs on the stager's
threads, never on the event loop: split over the idle ones, one job per request
while they are busy.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from wma_wire.frames import FrameLimits, OpenedFrame, open_frame, sniff_format
from wma_wire.protocol import encode_shared_pixels_request
from wma_wire.shm import PixelArena, Slot

from wma_fusion.config import SharedMemoryConfig
from wma_fusion.errors import ConfigError

__all__ = ["PixelStager", "SharedPixels", "check_stager_dependencies"]

# A request is split over idle decode threads in jobs of at least this many frames.
MIN_FRAMES_PER_JOB = 8
Decode = Callable[[OpenedFrame | None], np.ndarray[Any, np.dtype[np.uint8]] | None]


@dataclass(frozen=True)
class SharedPixels:
    """One request's pixels in a slot, and the OIP infer body that names them."""

    region: str  # the arena's region name, as members register it
    key: str  # its file under /dev/shm
    region_bytes: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    slot: Slot


def check_stager_dependencies() -> None:
    """:class:`ConfigError` when this install cannot decode frames (no OpenCV)."""
    _load_decoder()


def _load_decoder() -> Decode:
    try:
        from wma_wire.imaging import decode_image
    except ImportError:
        raise ConfigError(
            "fanout.shared_memory.enabled",
            "needs OpenCV in the gateway (pip install 'wma-ensemble[model-server]')",
        ) from None
    return decode_image


class PixelStager:
    """The arena and the decode threads of one gateway process (its lifespan)."""

    def __init__(self, config: SharedMemoryConfig, threads: int | None = None) -> None:
        self._decode = _load_decoder()
        self.config = config
        try:
            self.arena = PixelArena(config.slots, config.slot_mib * 2**20)
        except OSError as exc:
            size = config.slots * config.slot_mib
            raise ConfigError(
                "fanout.shared_memory",
                f"cannot reserve slots x slot_mib = {size} MiB in /dev/shm: {exc.strerror} "
                "(lower slots or slot_mib, or give /dev/shm more room)",
            ) from None
        self.threads = threads or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="wma-stage")
        self._busy = 0  # decode jobs submitted and not finished

    async def stage(
        self, frames: Sequence[bytes], limits: FrameLimits, request_id: str
    ) -> tuple[SharedPixels | None, str]:
        """The request's pixels in a slot (release it with :meth:`release`), or None
        and why not; ``frames`` passed the gateway's checks against ``limits``."""
        loop = asyncio.get_running_loop()
        jobs = max(1, min(self.threads - self._busy, len(frames) // MIN_FRAMES_PER_JOB))
        self._busy += jobs
        try:
            opened, reason = await loop.run_in_executor(self._pool, self._open, frames, limits)
            if opened is None:
                return None, reason
            first = opened[0]
            assert first is not None
            shape = [len(opened), first.height, first.width, 3]
            nbytes = math.prod(shape)
            slot = self.arena.acquire(nbytes)
            if slot is None:
                fits = nbytes <= self.arena.slot_bytes
                return None, "slots_full" if fits else "too_large"
            pixels = slot.array.reshape(shape)
            bounds = [len(opened) * k // jobs for k in range(jobs + 1)]
            # Ends only when every job has: a thread still writing must never meet
            # the slot's next request.
            filled = asyncio.gather(
                *(
                    loop.run_in_executor(self._pool, self._fill, opened, pixels, lo, hi)
                    for lo, hi in itertools.pairwise(bounds)
                ),
                return_exceptions=True,
            )
            try:
                parts = await asyncio.shield(filled)
            except asyncio.CancelledError:  # the request went away: free it once written
                filled.add_done_callback(lambda _: self.arena.release(slot))
                raise
            failed = [part for part in parts if part is not None]
            if failed:
                self.arena.release(slot)
                for part in failed:
                    if isinstance(part, BaseException):  # our bug: the request's 500
                        raise part
                return None, str(failed[0])
        finally:
            self._busy -= jobs
        body, headers = encode_shared_pixels_request(
            request_id, self.arena.name, slot.offset, shape
        )
        staged = SharedPixels(
            self.arena.name, self.arena.key, self.arena.size, body, tuple(headers.items()), slot
        )
        return staged, "staged"

    @staticmethod
    def _open(
        frames: Sequence[bytes], limits: FrameLimits
    ) -> tuple[list[OpenedFrame | None] | None, str]:
        opened: list[OpenedFrame | None] = []
        for index, data in enumerate(frames):
            fmt = sniff_format(data)
            frame = open_frame(data, fmt, limits, index) if fmt is not None else None
            if frame is None:
                return None, "undecodable"
            opened.append(frame)
        if len({(f.width, f.height) for f in opened if f is not None}) != 1:
            return None, "mixed_sizes"
        return opened, "staged"

    def _fill(
        self,
        opened: Sequence[OpenedFrame | None],
        pixels: np.ndarray[Any, np.dtype[np.uint8]],
        lo: int,
        hi: int,
    ) -> str | None:
        """Decode frames ``lo:hi`` into ``pixels``; None, or why they cannot go so."""
        for index in range(lo, hi):
            rgb = self._decode(opened[index])
            if rgb is None:
                return "undecodable"
            if rgb.shape != pixels.shape[1:]:  # EXIF orientation turned it
                return "mixed_sizes"
            pixels[index] = rgb
        return None

    def release(self, staged: SharedPixels) -> None:
        self.arena.release(staged.slot)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.arena.close()
