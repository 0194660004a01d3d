"""Reading training/evaluation scores (CSV or Parquet) into per-video scores.

Three layouts are accepted:

* **long** (per frame): columns ``model_id, video_id, label, frame_prob`` and the
  optional ``method`` and ``frame_index`` (frame order; else the file's row order);
  each video's frames are pooled with the model's aggregator.
* **training** (per frame, one file per model, ``--frames ID=PATH``): the training
  pipeline's ``method, label, frame_path, frame_prob`` (see :mod:`wma_calibrators.frames`).
* **wide** (per video, already aggregated): ``video_id, label, [method]`` and one
  column per model id holding that model's aggregated score (empty = no score).

Labels are 0 (real) or 1 (fake). Only videos scored by every model are used for
fitting; :attr:`VideoScores.dropped` says how many were left out.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from pyarrow import ArrowException
from tqdm import tqdm
from wma_core import parse_aggregator

from wma_calibrators.errors import ScoresError
from wma_calibrators.frames import check_frame_rows, sort_frames, tag_rows

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LONG_COLUMNS = ("model_id", "video_id", "label", "frame_prob")
META_COLUMNS = ("video_id", "label", "method")


@dataclass(frozen=True)
class VideoScores:
    """Aggregated scores, one row per video with a score from every model."""

    video_ids: tuple[str, ...]
    labels: IntArray
    methods: tuple[str, ...] | None
    scores: Mapping[str, FloatArray]
    layout: str
    dropped: int = 0

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(self.scores)

    def __len__(self) -> int:
        return len(self.video_ids)


def table_format(path: str | Path) -> str:
    """``"csv"`` (``.csv``, ``.csv.gz``) or ``"parquet"`` (``.parquet``, ``.pq``) by file name."""
    name = Path(path).name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    raise ScoresError(f"{path}: expected a file name ending in .csv or .parquet")


def read_table(path: str | Path) -> tuple[pd.DataFrame, str]:
    """Read a CSV or Parquet file; returns the frame and the sha256 of its bytes."""
    p = Path(path)
    kind = table_format(p)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ScoresError(f"cannot read scores file {path}: {exc.strerror}") from None
    try:
        if kind == "parquet":
            df = pd.read_parquet(io.BytesIO(data))
        else:
            df = pd.read_csv(
                io.BytesIO(data),
                compression="gzip" if p.name.lower().endswith(".gz") else None,
                dtype={"video_id": str, "model_id": str, "method": str, "frame_path": str},
            )
    except (ValueError, OSError, EOFError, ImportError, ArrowException) as exc:
        # Corrupt or truncated files surface as whichever error the reader hits first
        # (a truncated .csv.gz as an EOFError from gzip).
        raise ScoresError(f"cannot parse scores file {path}: {exc}") from None
    return df, hashlib.sha256(data).hexdigest()


def _labels(values: pd.Series) -> IntArray:
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    if not np.all(np.isin(numeric, (0.0, 1.0))):
        bad = values[~np.isin(numeric, (0.0, 1.0))].iloc[0]
        raise ScoresError(f"column 'label' must be 0 (real) or 1 (fake), found {bad!r}")
    return numeric.astype(np.int64)


def _per_video(df: pd.DataFrame, column: str) -> pd.Series:
    counts = df.groupby("video_id", sort=True)[column].nunique(dropna=False)
    if (counts > 1).any():
        raise ScoresError(f"video {counts[counts > 1].index[0]!r} has more than one {column!r}")
    return df.groupby("video_id", sort=True)[column].first()


def checked_frames(df: pd.DataFrame) -> pd.DataFrame:
    """Long-layout rows checked row by row and sorted by video, model and frame."""
    if "_file" not in df.columns:
        df = tag_rows(df, "scores")
    df = df.assign(video_id=df["video_id"].astype(str), model_id=df["model_id"].astype(str))
    return sort_frames(check_frame_rows(df))


def _long_to_wide(df: pd.DataFrame, aggregators: Mapping[str, str], progress: bool) -> pd.DataFrame:
    df = checked_frames(df)
    pools = {m: parse_aggregator(name) for m, name in aggregators.items()}
    groups = df.groupby(["video_id", "model_id"], sort=True)["frame_prob"]
    rows: dict[tuple[str, str], float | None] = {}
    for (video_id, model_id), frame_probs in tqdm(
        groups, desc="aggregating", unit="video-model", disable=not progress
    ):
        rows[(str(video_id), str(model_id))] = pools[str(model_id)](frame_probs.to_numpy())
    wide = pd.Series(rows, dtype=np.float64).unstack()
    meta_cols = [c for c in ("label", "method") if c in df.columns]
    meta = pd.DataFrame({c: _per_video(df, c) for c in meta_cols})
    return meta.join(wide, how="left").reset_index(names="video_id")


def model_ids_of(df: pd.DataFrame) -> tuple[str, ...]:
    """The model ids a scores table holds, in order of first appearance."""
    if "frame_prob" in df.columns:
        missing = [c for c in LONG_COLUMNS if c not in df.columns]
        if missing:
            raise ScoresError(
                f"long layout needs columns {', '.join(LONG_COLUMNS)}; missing {missing}"
            )
        return tuple(str(m) for m in pd.unique(df["model_id"].astype(str)))
    for column in ("video_id", "label"):
        if column not in df.columns:
            raise ScoresError(f"scores file has no {column!r} column")
    ids = tuple(str(c) for c in df.columns if c not in META_COLUMNS)
    if not ids:
        raise ScoresError("wide layout needs one column of aggregated scores per model id")
    return ids


def video_scores(
    df: pd.DataFrame,
    aggregators: Mapping[str, str],
    progress: bool = False,
    *,
    model_ids: Sequence[str] | None = None,
) -> VideoScores:
    """Aggregate (long layout) or read (wide layout) one score per video and model.

    ``model_ids`` is :func:`model_ids_of` ``(df)`` when the caller has it already.
    """
    ids = model_ids_of(df) if model_ids is None else tuple(model_ids)
    if df.empty:
        raise ScoresError("scores file has no rows")
    layout = "wide"
    if "frame_prob" in df.columns:
        layout = "training" if "frame_path" in df.columns else "long"
    if layout != "wide":
        wide = _long_to_wide(df, {m: aggregators[m] for m in ids}, progress)
    else:
        wide = df.assign(video_id=df["video_id"].astype(str))
        if wide["video_id"].duplicated().any():
            raise ScoresError("wide layout has a repeated video_id")
    matrix = wide[list(ids)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    finite = np.isfinite(matrix)
    if np.any(finite & ((matrix < 0) | (matrix > 1))):
        raise ScoresError("aggregated scores must lie within [0, 1]")
    keep = finite.all(axis=1)
    kept = wide[keep]
    labels = _labels(kept["label"])
    if len(kept) == 0 or len(np.unique(labels)) < 2:
        raise ScoresError("need scored videos of both labels (0 real, 1 fake)")
    methods = (
        tuple(str(m) for m in kept["method"].fillna("").to_list()) if "method" in kept else None
    )
    return VideoScores(
        video_ids=tuple(kept["video_id"].to_list()),
        labels=labels,
        methods=methods,
        scores={m: matrix[keep, i].copy() for i, m in enumerate(ids)},
        layout=layout,
        dropped=int((~keep).sum()),
    )
