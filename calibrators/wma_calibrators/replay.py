"""Replaying frame scores as the meeting server sends them, scored like the gateway.

Each video is one participant. Its frames (the union of every model's frame
indices, in frame order) are cut into consecutive requests of
``frames_per_request`` frames; a shorter last chunk is dropped, as the meeting
server waits for a full batch. A request's decision sees its own frames, or with
``window`` the last ``window`` frames up to its end (the old participant logic's
sliding window). A model that scored none of those frames is missing from that
request, exactly as a member that scored no frame is at the gateway.

Every request is decided by the gateway's own path through :mod:`wma_core`:
the bundle's aggregator per model, its isotonic curve, :func:`wma_core.fuse`
with the bundle's fusion rule (and the interval rule for missing members) and
:func:`wma_core.decide`. With ``tracker`` the banner shown is what the client
SDK's :class:`wma_fusion.client.ParticipantTracker` makes of those answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from wma_core import Aggregator, Banner, Decision, Verdict, decide, fuse, parse_aggregator
from wma_core.bundle import CalibratorBundle
from wma_fusion.client import ParticipantTracker

from wma_calibrators.errors import ScoresError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
FRAMES_PER_SECOND = 5.0  # about 10 face crops per participant every 2 s


@dataclass(frozen=True)
class VideoFrames:
    """One video's frame scores: per model, frame indices (sorted) and probabilities."""

    video_id: str
    label: int
    method: str
    order: IntArray  # every frame index some model scored, in frame order
    frames: Mapping[str, tuple[IntArray, FloatArray]]


@dataclass(frozen=True)
class RequestOutcome:
    verdict: Verdict
    banner: Banner  # the banner shown: the decision's, or the tracker's
    seconds: float  # when the request's last frame was sent, from the video's start


@dataclass(frozen=True)
class VideoReplay:
    video: VideoFrames
    requests: tuple[RequestOutcome, ...]


def video_frames(table: pd.DataFrame, model_ids: tuple[str, ...]) -> list[VideoFrames]:
    """Group checked long-layout rows (sorted by video, model, frame) into videos."""
    if "frame_prob" not in table.columns:
        raise ScoresError("simulate needs per-frame scores (long or training layout), not wide")
    index = (
        table["frame_index"].to_numpy(dtype=np.int64)
        if "frame_index" in table.columns
        else table.groupby(["video_id", "model_id"], sort=False).cumcount().to_numpy(np.int64)
    )
    table = table.assign(_index=index)
    has_method = "method" in table.columns
    videos = []
    for video_id, rows in table.groupby("video_id", sort=True):
        frames = {
            str(m): (g["_index"].to_numpy(np.int64), g["frame_prob"].to_numpy(np.float64))
            for m, g in rows.groupby("model_id", sort=False)
            if str(m) in model_ids
        }
        order = np.unique(np.concatenate([f[0] for f in frames.values()])) if frames else None
        if order is None:
            continue
        method = str(rows["method"].iloc[0]) if has_method else ""
        videos.append(VideoFrames(str(video_id), int(rows["label"].iloc[0]), method, order, frames))
    return videos


def aggregators_of(bundle: CalibratorBundle) -> dict[str, Aggregator]:
    return {m: parse_aggregator(c.aggregator) for m, c in bundle.models.items()}


def decide_request(
    bundle: CalibratorBundle,
    probs: Mapping[str, FloatArray],
    pools: Mapping[str, Aggregator] | None = None,
) -> Decision:
    """Aggregate, calibrate, fuse and decide one request, as the gateway does."""
    pools = pools or aggregators_of(bundle)
    calibrated: dict[str, float | None] = {}
    for model_id, cal in bundle.models.items():
        aggregated = pools[model_id](probs.get(model_id, np.empty(0)))
        calibrated[model_id] = cal.curve(aggregated) if aggregated is not None else None
    fused = fuse(calibrated, bundle.output_ranges(), bundle.fusion)
    return decide(fused, bundle.thresholds)


def replay_video(
    bundle: CalibratorBundle,
    video: VideoFrames,
    frames_per_request: int,
    window: int | None = None,
    tracker: bool = False,
    pools: Mapping[str, Aggregator] | None = None,
) -> VideoReplay:
    """Every full request of one video, decided in order."""
    pools = pools or aggregators_of(bundle)
    n = frames_per_request
    clock = [0.0]
    track = ParticipantTracker(clock=lambda: clock[0]) if tracker else None
    outcomes = []
    for end in range(n, video.order.size + 1, n):
        start = max(0, end - window) if window is not None else end - n
        first, last = int(video.order[start]), int(video.order[end - 1])
        probs: dict[str, FloatArray] = {}
        for model_id, (idx, p) in video.frames.items():
            lo, hi = np.searchsorted(idx, first, "left"), np.searchsorted(idx, last, "right")
            probs[model_id] = p[lo:hi]
        decision = decide_request(bundle, probs, pools)
        clock[0] = end / FRAMES_PER_SECOND
        banner = decision.banner
        if track is not None:
            answer = {"verdict": decision.verdict.value, "banner": decision.banner.value}
            update = track.update(video.video_id, answer)
            banner = track.banner(video.video_id) if update is None else update.banner
        outcomes.append(RequestOutcome(decision.verdict, banner, clock[0]))
    return VideoReplay(video, tuple(outcomes))


def replay(
    bundle: CalibratorBundle,
    videos: list[VideoFrames],
    frames_per_request: int,
    window: int | None = None,
    tracker: bool = False,
) -> list[VideoReplay]:
    """Replay every video (videos shorter than one request give no request)."""
    pools = aggregators_of(bundle)
    return [replay_video(bundle, v, frames_per_request, window, tracker, pools) for v in videos]
