"""A seeded synthetic training set of per-frame scores (long layout).

It stands in for real training scores in tests and for building
``services/local/wma_local/mock.json``. Each video has a latent "fakeness" drawn from a
label-dependent Beta distribution; each model scores it near that latent (a
specialist a little higher on its own manipulation method) and each frame adds
noise. Scores of the four models are strongly correlated, so the calibrated
ensemble is monotone along the diagonal that the mock model server's uniform
grey frames walk (every model sees the same score there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from wma_calibrators.aggregators import DEFAULT_AGGREGATORS
from wma_calibrators.errors import CalibrateError
from wma_calibrators.scores import table_format

# Which method each default model specialises in.
SPECIALITY: Mapping[str, str] = {
    "9rfa62j1": "EFS",
    "1mjgo9w1": "FaceSwap",
    "dfsesrgu": "Reenact",
    "4vtny88m": "Platform",
}
FAKE_METHODS: Sequence[str] = ("EFS", "FaceSwap", "Reenact", "Platform")
REAL_METHOD = "real"
# Latent fakeness ~ Beta(a, b): fakes lean high, reals low.
BETA_FAKE = (6.0, 1.5)
BETA_REAL = (1.5, 6.0)
SPECIALIST_BOOST = 0.08
MODEL_NOISE = 0.03
FRAME_NOISE = 0.06


def synthetic_frames(
    n_videos: int = 4000,
    seed: int = 7,
    model_ids: Sequence[str] = tuple(DEFAULT_AGGREGATORS),
    fake_share: float = 0.5,
    frames: tuple[int, int] = (6, 16),
) -> pd.DataFrame:
    """Long-layout frame scores: ``model_id, video_id, label, method, frame_prob``."""
    if n_videos < 2 or not 0.0 < fake_share < 1.0:
        raise CalibrateError(
            f"need n_videos >= 2 and 0 < fake_share < 1, got {n_videos} and {fake_share}"
        )
    rng = np.random.default_rng(seed)
    labels = (rng.random(n_videos) < fake_share).astype(np.int64)
    methods = np.where(labels == 1, rng.choice(FAKE_METHODS, size=n_videos), REAL_METHOD)
    latent = np.where(labels == 1, rng.beta(*BETA_FAKE, n_videos), rng.beta(*BETA_REAL, n_videos))
    n_frames = rng.integers(frames[0], frames[1] + 1, size=n_videos)
    parts = []
    for model_id in model_ids:
        boost = np.where(methods == SPECIALITY.get(model_id, ""), SPECIALIST_BOOST, 0.0)
        centre = latent + boost + rng.normal(0.0, MODEL_NOISE, n_videos)
        video_idx = np.repeat(np.arange(n_videos), n_frames)
        probs = centre[video_idx] + rng.normal(0.0, FRAME_NOISE, video_idx.size)
        parts.append(
            pd.DataFrame(
                {
                    "model_id": model_id,
                    "video_id": [f"v{i:05d}" for i in video_idx],
                    "label": labels[video_idx],
                    "method": methods[video_idx],
                    "frame_prob": np.round(np.clip(probs, 0.0, 1.0), 6),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def write_frames(df: pd.DataFrame, path: str | Path) -> None:
    """Write as Parquet or CSV, chosen by the file name (see :func:`table_format`)."""
    if table_format(path) == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
