"""Scoring backends behind one small interface, and the factory that picks one.

A backend turns decoded RGB frames into fake probabilities. ``prepare`` runs per
frame in a decode thread (resize, normalise); ``predict`` runs on a batch of
prepared frames in the batcher's single inference thread. ``effort`` imports
PyTorch lazily, so the mock backend never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from wma_model_server.settings import ModelServerSettings

__all__ = ["Backend", "build_backend"]


class Backend(Protocol):
    model_id: str
    kind: str

    def prepare(self, frame: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
        """Per-frame preprocessing of an RGB uint8 ``[H, W, 3]`` frame."""
        ...

    def predict(self, inputs: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        """Fake probabilities (float32 ``[N]``, in [0, 1]) of prepared frames."""
        ...

    def warmup(self) -> None:
        """Run a forward pass so the first request pays no one-off cost."""
        ...


def build_backend(settings: ModelServerSettings) -> Backend:
    """The backend the settings ask for (loads the checkpoint for ``effort``)."""
    if settings.backend == "mock":
        from wma_model_server.backends.mock import MockBackend

        return MockBackend(settings.model_id, settings.bias)
    from wma_model_server.backends.effort import EffortBackend

    assert settings.checkpoint is not None  # enforced by the settings validator
    return EffortBackend.from_checkpoint(
        settings.model_id,
        settings.checkpoint,
        device=settings.device,
        dtype=settings.dtype,
        num_heads=settings.num_heads,
        interpolation=settings.interpolation,
        cpu_threads=settings.cpu_threads,
    )
