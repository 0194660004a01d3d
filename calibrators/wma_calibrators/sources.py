"""Where scores come from: one file (long or wide layout) or ``--frames ID=PATH``.

:func:`read_scores` is what ``fit``, ``report`` and ``simulate`` call; it keeps
the source's name and sha256 for the bundle's provenance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from wma_calibrators.errors import ScoresError
from wma_calibrators.frames import parse_frames_flags, tag_rows, training_frames
from wma_calibrators.scores import model_ids_of, read_table


@dataclass(frozen=True)
class ScoresInput:
    """A scores table as read, with its model ids and where it came from."""

    table: pd.DataFrame
    model_ids: tuple[str, ...]
    layout: str
    provenance: dict[str, Any] = field(default_factory=dict)


def read_scores(path: str | None, frames: Sequence[str] = ()) -> ScoresInput:
    """Read ``path`` (long or wide layout) or the ``--frames ID=PATH`` files (training
    layout). The provenance of training files: ``sources`` (each file's name and
    sha256) and a ``source_sha256`` over the lines ``ID SHA256`` in flag order."""
    if path and frames:
        raise ScoresError("give either a scores file or --frames ID=PATH, not both")
    if frames:
        pairs = parse_frames_flags(frames)
        table, sources = training_frames(pairs, read_table)
        digest = "".join(f"{m} {s['sha256']}\n" for m, s in sources.items())
        provenance = {
            "source_sha256": hashlib.sha256(digest.encode()).hexdigest(),
            "source_name": ", ".join(f"{m}={s['name']}" for m, s in sources.items()),
            "sources": sources,
        }
        return ScoresInput(table, tuple(m for m, _ in pairs), "training", provenance)
    if not path:
        raise ScoresError("need a scores file (SCORES) or --frames ID=PATH")
    df, sha = read_table(path)
    ids = model_ids_of(df)
    layout = "wide"
    if "frame_prob" in df.columns:
        df, layout = tag_rows(df, path), "long"
    return ScoresInput(df, ids, layout, {"source_sha256": sha, "source_name": Path(path).name})
