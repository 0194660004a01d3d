"""The demo: bundled face-crop "participants" analyzed by a temporary local stack.

``python -m wma_local.demo`` (or ``wma demo``) runs the ``wma analyze`` logic on
each participant under ``demo_frames/`` and prints verdicts and banners.
``python -m wma_local.demo --generate`` rebuilds the frames (seeded) from Grace
Hopper's official US Navy portrait (public domain), which matplotlib ships as
sample data; each participant's brightness is set so that the mock backend's score
(mean pixel / 255) falls in the REAL, UNCERTAIN or FAKE range of
the mock bundle (``mock.json``), and ``no-face`` holds truncated JPEGs nothing can decode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

FRAMES_DIR = Path(__file__).resolve().parent / "demo_frames"
# participant -> target mean grey level of its crops (mock score = level / 255)
PARTICIPANTS = {"alice-real": 88.0, "bob-uncertain": 147.0, "carol-fake": 192.0}
NO_FACE = "dave-no-face"
FRAMES_PER_PARTICIPANT = 10
FACE_CENTRE, FACE_SIZE = (260, 230), 210  # in the 512x600 portrait


def _crops(seed: int, target: float) -> list[bytes]:
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    portrait = Image.open(str(path)).convert("RGB")
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(FRAMES_PER_PARTICIPANT):
        dx, dy = rng.integers(-15, 16, size=2)
        half = int(FACE_SIZE * rng.uniform(0.9, 1.1)) // 2
        cx, cy = FACE_CENTRE[0] + int(dx), FACE_CENTRE[1] + int(dy)
        side = int(rng.choice([64, 96, 128]))
        crop = portrait.crop((cx - half, cy - half, cx + half, cy + half)).resize((side, side))
        pixels = np.asarray(crop, dtype=np.float64)
        level = target + rng.uniform(-4.0, 4.0)
        shifted = np.clip((pixels - pixels.mean()) * 0.5 + level, 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(shifted).save(out, format="JPEG", quality=85)
        frames.append(out.getvalue())
    return frames


def generate(out_dir: Path = FRAMES_DIR, seed: int = 20240601) -> None:
    """Write every participant's frames (deterministic for a given seed)."""
    for i, (name, target) in enumerate(PARTICIPANTS.items()):
        _write(out_dir / name, _crops(seed + i, target))
    truncated = [f[: len(f) // 3] for f in _crops(seed + 99, 120.0)]
    _write(out_dir / NO_FACE, truncated)


def _write(directory: Path, frames: list[bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.jpg"):
        old.unlink()
    for i, frame in enumerate(frames):
        (directory / f"frame{i:02d}.jpg").write_bytes(frame)


def run(gateway: str | None = None, frames_dir: Path = FRAMES_DIR) -> int:
    """Analyze each participant; prints a table per participant and a summary."""
    from wma_fusion.client import FusionClientError

    from wma_local.cli_analyze import (
        DEFAULT_NUM_FRAMES,
        analyze,
        default_participant_id,
        format_result,
        load_frames,
        local_gateway,
    )

    participants = sorted(p for p in frames_dir.iterdir() if p.is_dir())
    summary = []
    with contextlib.ExitStack() as stack:
        url = gateway or stack.enter_context(local_gateway())
        for directory in participants:
            frames = load_frames(directory, DEFAULT_NUM_FRAMES)
            try:
                pid = default_participant_id(directory)
                result = asyncio.run(analyze(url, frames, pid, directory.name))
            except FusionClientError as exc:
                print(f"wma demo: error: {directory.name}: {exc}", file=sys.stderr)  # noqa: T201
                return 1
            print(format_result(result), end="\n\n")  # noqa: T201
            summary.append(f"{directory.name:<16} {result['verdict']:<10} {result['banner']}")
    print("participant      verdict    banner")  # noqa: T201
    print("\n".join(summary))  # noqa: T201
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wma_local.demo")
    parser.add_argument("--generate", action="store_true", help="rebuild demo_frames/")
    parser.add_argument("--gateway", help="gateway URL (default: a temporary local stack)")
    args = parser.parse_args(argv)
    if args.generate:
        generate()
        return 0
    return run(args.gateway)


if __name__ == "__main__":
    sys.exit(main())
