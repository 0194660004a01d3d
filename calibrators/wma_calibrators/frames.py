"""Per-frame score files: the training pipeline's layout, and row-level checks.

The training pipeline writes one frame-score file per model with columns
``method, label, frame_path, frame_prob``; a video is the directory of
``frame_path`` (``.../<method>/<clip_id>/<frame>.png``) and a frame's order is
the number in its file name. :func:`training_frames` reads such files
(``--frames ID=PATH``, one per model) into the long layout with a
``frame_index`` column, so fitting, reports and the replay see one table.

Rows may come in any order. Every refusal names the file, the row (counted
from 1 after the header) and the column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from wma_calibrators.errors import ScoresError

TRAINING_COLUMNS = ("method", "label", "frame_path", "frame_prob")
BoolArray = npt.NDArray[np.bool_]


def row_error(df: pd.DataFrame, mask: BoolArray, column: str, problem: str) -> ScoresError:
    """The error for the first row in ``mask``, naming its file, row and column."""
    i = int(np.flatnonzero(mask)[0])
    where = f"{df['_file'].iloc[i]}: row {int(df['_row'].iloc[i])}, column {column!r}"
    return ScoresError(f"{where}: {problem}, got {df[column].iloc[i]!r}")


def tag_rows(df: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Remember each row's file and row number (1 = the first row after the header)."""
    return df.reset_index(drop=True).assign(_file=str(path), _row=np.arange(1, len(df) + 1))


def check_frame_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Check labels, probabilities and per-video consistency of tagged frame rows;
    returns the rows with numeric ``label`` and ``frame_prob``."""
    label = pd.to_numeric(df["label"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isin(label, (0.0, 1.0))
    if bad.any():
        raise row_error(df, bad, "label", "must be 0 (real) or 1 (fake)")
    prob = pd.to_numeric(df["frame_prob"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(prob) & (prob >= 0.0) & (prob <= 1.0))
    if bad.any():
        raise row_error(df, bad, "frame_prob", "must be a probability in [0, 1]")
    df = df.assign(label=label.astype(np.int64), frame_prob=prob)
    if "frame_index" in df.columns:
        index = pd.to_numeric(df["frame_index"], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~(np.isfinite(index) & (index >= 0) & (index == np.round(index)))
        if bad.any():
            raise row_error(df, bad, "frame_index", "must be a whole number >= 0")
        df = df.assign(frame_index=index.astype(np.int64))
    for column in ("label", "method"):
        if column not in df.columns:
            continue
        values = df[column].fillna("") if column == "method" else df[column]
        first = values.groupby(df["video_id"], sort=False).transform("first")
        bad = (values != first).to_numpy()
        if bad.any():
            raise row_error(
                df, bad, column, f"differs from the video's first row ({first[bad].iloc[0]!r})"
            )
    if "frame_index" in df.columns:
        dup = df.duplicated(["model_id", "video_id", "frame_index"]).to_numpy()
        if dup.any():
            column = "frame_path" if "frame_path" in df.columns else "frame_index"
            raise row_error(df, dup, column, "the same frame of the same video appears twice")
    return df


def parse_frames_flags(items: Iterable[str]) -> list[tuple[str, str]]:
    """``ID=PATH`` pairs of ``--frames``; each model id at most once."""
    pairs: list[tuple[str, str]] = []
    for item in items:
        model_id, sep, path = item.partition("=")
        if not sep or not model_id.strip() or not path:
            raise ScoresError(f"--frames expects MODEL_ID=PATH, got {item!r}")
        if any(m == model_id.strip() for m, _ in pairs):
            raise ScoresError(f"--frames names model {model_id.strip()!r} twice")
        pairs.append((model_id.strip(), path))
    return pairs


def _training_rows(df: pd.DataFrame, path: str, model_id: str) -> pd.DataFrame:
    missing = [c for c in TRAINING_COLUMNS if c not in df.columns]
    if missing:
        raise ScoresError(
            f"{path}: the training layout needs columns {', '.join(TRAINING_COLUMNS)}; "
            f"missing {', '.join(repr(c) for c in missing)}"
        )
    if df.empty:
        raise ScoresError(f"{path}: scores file has no rows")
    df = tag_rows(df, path)
    frame_path = df["frame_path"].astype("string").str.replace("\\", "/", regex=False)
    parts = frame_path.str.rpartition("/")
    video, name = parts[0], parts[2]
    bad = (df["frame_path"].isna() | (video.fillna("") == "")).to_numpy()
    if bad.any():
        raise row_error(df, bad, "frame_path", "needs a directory (the video) and a file name")
    number = name.str.extract(r"(\d+)\D*$", expand=False)
    bad = number.isna().to_numpy()
    if bad.any():
        raise row_error(df, bad, "frame_path", "the file name holds no frame number")
    return df.assign(
        model_id=model_id,
        video_id=video.astype(str),
        frame_index=number.astype(np.int64),
        method=df["method"].astype("string").fillna("").astype(str),
    )


def training_frames(
    sources: Sequence[tuple[str, str]], read: Callable[[str], tuple[pd.DataFrame, str]]
) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """Read one training-layout file per model into checked long-layout rows.

    Returns the rows (sorted by video, model and frame) and, per model, the source
    file's name and sha256 (for the bundle's provenance).
    """
    frames: list[pd.DataFrame] = []
    provenance: dict[str, dict[str, str]] = {}
    for model_id, path in sources:
        df, sha = read(path)
        frames.append(_training_rows(df, path, model_id))
        provenance[model_id] = {"name": Path(path).name, "sha256": sha}
    rows = check_frame_rows(pd.concat(frames, ignore_index=True))
    return sort_frames(rows), provenance


def sort_frames(df: pd.DataFrame) -> pd.DataFrame:
    """Rows by video, model and frame order (the file order where no ``frame_index``)."""
    keys = ["video_id", "model_id"] + (["frame_index"] if "frame_index" in df.columns else [])
    return df.sort_values(keys, kind="stable").reset_index(drop=True)
