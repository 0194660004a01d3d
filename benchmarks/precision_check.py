"""Precision check: per-frame |dp| and fused-verdict flips of bf16, fp16 and TF32 against fp32.

Writes a random checkpoint with the production shapes (CLIP ViT-L/14 Effort layout,
``effort_random.VIT_L14``) to a temp dir and loads it through the server's loader
once per precision. The frames are realistic face crops: jittered square crops
around the face of matplotlib's ``grace_hopper.jpg`` (brightness/contrast varied,
JPEG-encoded), decoded and preprocessed exactly as the server does. Each precision
scores the same frames; the report gives per-frame max/mean ``|dp|`` and
``|d logit|`` against fp32.

Verdict flips: a random model's probabilities do not sit where trained models put
theirs, so each synthetic video shifts its frames' logits (the same shift for every
precision, so a precision's logit error is kept as measured) to land each member's
aggregated score at a chosen point, then aggregates, calibrates and fuses with the
``wma_core`` functions and the calibrators of ``services/local/wma_local/mock.json``. Videos are
kept only when their fp32 fused score lies within one band width of the band
(``t_low - w .. t_high + w``), i.e. all of them where a flip is possible, once for
the bundle's thresholds and once for the production ones (0.996700 / 0.998248).
A flip is a verdict that differs from fp32's. All four members score the same
frames with the same precision error (one checkpoint), so their errors are fully
correlated: a pessimistic case for noisy-OR.

``--precisions float32-batch1`` scores fp32 again one frame per forward pass (the
noise floor of fp32 itself: dynamic batching changes batch composition).

On a CPU, bf16 and fp16 run natively in those dtypes; TF32 (a GPU tensor-core mode)
is emulated by rounding the inputs and weights of every ``Linear`` and ``Conv2d``
to TF32's 10-bit mantissa (round to nearest even) and accumulating in fp32; the
attention products ``q @ k^T`` and ``attn @ v`` stay fp32 in the emulation. On CUDA
(``--device cuda``) TF32 is the real mode (``allow_tf32``).

    nice -n 10 .venv/bin/python benchmarks/precision_check.py --frames 48
    nice -n 10 .venv/bin/python benchmarks/precision_check.py --frames 48 \
        --precisions float32-batch1
    .venv/bin/python benchmarks/precision_check.py --frames 256 --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import io
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance
from wma_core import Thresholds, aggregate, noisy_or, verdict_for_score
from wma_core.bundle import CalibratorBundle, load_bundle
from wma_model_server.backends.effort import EffortBackend
from wma_model_server.backends.effort_random import VIT_L14, save_random_checkpoint
from wma_wire.frames import FrameLimits, open_frame
from wma_wire.imaging import decode_image

REPO = Path(__file__).resolve().parents[1]
PRODUCTION = Thresholds(0.996700, 0.998248)
# float32-batch1: fp32 again, one frame per forward pass instead of --batch; the noise
# floor of fp32 itself (dynamic batching changes batch composition in production).
PRECISIONS = ("bfloat16", "float16", "tf32", "float32-batch1")
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def face_crops(count: int, seed: int = 0) -> list[bytes]:
    """JPEG face crops (256 px, like the meeting client's) around Grace Hopper's face."""
    from matplotlib import cbook

    path = Path(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    photo = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    rng = np.random.default_rng(seed)
    cx, cy, side = 265, 215, 300  # the face box in the 512x600 portrait
    frames = []
    for _ in range(count):
        s = side * rng.uniform(0.8, 1.2)
        x, y = cx + rng.uniform(-0.08, 0.08) * s, cy + rng.uniform(-0.08, 0.08) * s
        crop = photo.crop((int(x - s / 2), int(y - s / 2), int(x + s / 2), int(y + s / 2)))
        crop = crop.resize((256, 256), Image.Resampling.BICUBIC)
        crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.7, 1.3))
        crop = ImageEnhance.Contrast(crop).enhance(rng.uniform(0.8, 1.2))
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=int(rng.integers(75, 96)))
        frames.append(buf.getvalue())
    return frames


def _round_tf32(x: torch.Tensor) -> torch.Tensor:
    """fp32 -> nearest TF32 value (10-bit mantissa, ties to even), kept in fp32."""
    bits = x.contiguous().view(torch.int32)
    rounded = (bits + 0xFFF + ((bits >> 13) & 1)) & ~0x1FFF
    return rounded.view(torch.float32)


def emulate_tf32(model: torch.nn.Module) -> None:
    """Round weights once and inputs per call of every Linear/Conv2d to TF32."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
                module.weight.copy_(_round_tf32(module.weight))
                module.register_forward_pre_hook(lambda _m, args: (_round_tf32(args[0]), *args[1:]))


def score(ckpt: Path, precision: str, decoded: list[Any], device: str, batch: int) -> FloatArray:
    """Fake probabilities of decoded RGB frames, preprocessed by the backend itself."""
    # The backend sets CUDA's TF32 flags from the dtype (on for tf32, off for float32).
    dtype = precision if precision in ("bfloat16", "float16", "tf32") else "float32"
    batch = 1 if precision == "float32-batch1" else batch
    backend = EffortBackend.from_checkpoint("precision", ckpt, device=device, dtype=dtype)
    if precision == "tf32" and not device.startswith("cuda"):
        emulate_tf32(backend.model)
    frames = [backend.prepare(frame) for frame in decoded]
    probs = [backend.predict(frames[i : i + batch]) for i in range(0, len(frames), batch)]
    return np.concatenate(probs).astype(np.float64)


def logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-7, 1 - 1e-7)
    out: FloatArray = np.log(q) - np.log1p(-q)
    return out


@dataclass
class Videos:
    frames: np.ndarray[Any, np.dtype[np.int64]]  # [V, n] frame indices
    shifts: FloatArray  # [V, members] logit shifts


def fused_verdicts(
    probs: FloatArray, videos: Videos, bundle: CalibratorBundle, thresholds: Thresholds
) -> tuple[FloatArray, list[str]]:
    """Fused score and verdict per video, through wma_core's aggregate/noisy_or/verdict."""
    members = list(bundle.models)
    base = logit(probs)[videos.frames]  # [V, n]
    scores, verdicts = [], []
    for v in range(len(videos.frames)):
        calibrated = []
        for m, model_id in enumerate(members):
            shifted = 1.0 / (1.0 + np.exp(-(base[v] + videos.shifts[v, m])))
            value = aggregate(bundle.models[model_id].aggregator, shifted)
            assert value is not None
            calibrated.append(bundle.models[model_id].curve(value))
        fused = noisy_or(calibrated)
        scores.append(fused)
        verdicts.append(str(verdict_for_score(fused, thresholds)))
    return np.array(scores), verdicts


def _screen(probs: FloatArray, videos: Videos, bundle: CalibratorBundle) -> FloatArray:
    """Vectorised fused scores, only to pick candidates (the report uses wma_core)."""
    base = logit(probs)[videos.frames]  # [V, n]
    calibrated = []
    for m, cal in enumerate(bundle.models.values()):
        x = 1.0 / (1.0 + np.exp(-(base + videos.shifts[:, m : m + 1])))
        kind, value = re.fullmatch(r"(topk|softmax_b)(\d+)", cal.aggregator).groups()  # type: ignore[union-attr]
        if kind == "topk":
            agg = np.sort(x, axis=1)[:, -min(int(value), x.shape[1]) :].mean(axis=1)
        else:
            bx = float(value) * x
            top = bx.max(axis=1, keepdims=True)
            agg = (np.log(np.exp(bx - top).mean(axis=1)) + top[:, 0]) / float(value)
        calibrated.append(cal.curve.predict(agg))
    fused: FloatArray = 1.0 - np.prod(1.0 - np.stack(calibrated, axis=1), axis=1)
    return fused


def near_band_videos(
    reference: FloatArray,
    bundle: CalibratorBundle,
    thresholds: Thresholds,
    *,
    want: int,
    per_video: int,
    rng: np.random.Generator,
) -> Videos:
    """``want`` videos whose fp32 fused score lies within one band width of the band,
    a third each below ``t_low``, inside the band and above ``t_high``."""
    width = thresholds.t_high - thresholds.t_low
    edges = (
        thresholds.t_low - width,
        thresholds.t_low,
        thresholds.t_high,
        thresholds.t_high + width,
    )
    members = len(bundle.models)
    kept: list[list[Videos]] = [[], [], []]
    quota = -(-want // 3)
    for _ in range(1000):
        n = 20000
        frames = np.argsort(rng.random((n, len(reference))), axis=1)[:, :per_video]
        centre = np.median(logit(reference)[frames], axis=1, keepdims=True)
        targets = rng.uniform(0.05, 0.995, (n, members))
        candidates = Videos(frames, logit(targets) - centre)
        fused = _screen(reference, candidates, bundle)
        for stratum in range(3):
            inside = (fused >= edges[stratum]) & (fused <= edges[stratum + 1])
            kept[stratum].append(Videos(frames[inside], candidates.shifts[inside]))
        if all(sum(len(v.frames) for v in stratum) >= quota for stratum in kept):
            break
    parts = [
        Videos(
            np.concatenate([v.frames for v in stratum])[:quota],
            np.concatenate([v.shifts for v in stratum])[:quota],
        )
        for stratum in kept
    ]
    return Videos(
        np.concatenate([v.frames for v in parts]), np.concatenate([v.shifts for v in parts])
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=48, help="face crops scored per precision")
    parser.add_argument("--videos", type=int, default=4000, help="near-band videos per bundle")
    parser.add_argument("--frames-per-video", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8, help="frames per forward pass")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS[:3]), choices=PRECISIONS)
    parser.add_argument(
        "--bundle", type=Path, default=REPO / "services" / "local" / "wma_local" / "mock.json"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    bundle = load_bundle(opts.bundle)
    limits = FrameLimits()
    decoded = [
        decode_image(open_frame(data, "jpeg", limits, i))
        for i, data in enumerate(face_crops(opts.frames))
    ]
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {opts.device}"
    )
    probs: dict[str, FloatArray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "vit_l14_random.pth"
        save_random_checkpoint(ckpt, VIT_L14, seed=0)
        for precision in ("float32", *opts.precisions):
            start = time.perf_counter()
            probs[precision] = score(ckpt, precision, decoded, opts.device, opts.batch)
            seconds = time.perf_counter() - start
            print(f"{precision}: {len(decoded)} frames in {seconds:.0f} s", flush=True)
    reference = probs["float32"]
    if not np.isfinite(reference).all():
        raise SystemExit("fp32 produced a non-finite probability")
    print(
        f"\nfp32 probabilities: min {reference.min():.4f}, median {np.median(reference):.4f}, "
        f"max {reference.max():.4f}\n"
    )
    print("| precision | max abs dp | mean abs dp | max abs dlogit | non-finite |")
    print("|---|---:|---:|---:|---:|")
    for precision in opts.precisions:
        dp = np.abs(probs[precision] - reference)
        dl = np.abs(logit(probs[precision]) - logit(reference))
        bad = int((~np.isfinite(probs[precision])).sum())
        print(f"| {precision} | {dp.max():.2e} | {dp.mean():.2e} | {dl.max():.2e} | {bad} |")
    rng = np.random.default_rng(1)
    rows = []
    for name, thresholds in (("mock.json", bundle.thresholds), ("production", PRODUCTION)):
        videos = near_band_videos(
            reference,
            bundle,
            thresholds,
            want=opts.videos,
            per_video=opts.frames_per_video,
            rng=rng,
        )
        exact, expected = fused_verdicts(reference, videos, bundle, thresholds)
        screened = _screen(reference, videos, bundle)
        assert np.allclose(exact, screened, rtol=0, atol=1e-9), "screening != wma_core"
        counts = {v: expected.count(v) for v in ("REAL", "UNCERTAIN", "FAKE")}
        for precision in opts.precisions:
            fused, got = fused_verdicts(probs[precision], videos, bundle, thresholds)
            flips = sum(a != b for a, b in zip(expected, got, strict=True))
            rows.append(
                f"| {name} ({thresholds.t_low:.6f} / {thresholds.t_high:.6f}) | {precision} "
                f"| {len(got)} | {counts} | {flips} | {flips / max(len(got), 1):.2%} |"
            )
    print("\n| thresholds | precision | near-band videos | fp32 verdicts | flips | flip rate |")
    print("|---|---|---:|---|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
