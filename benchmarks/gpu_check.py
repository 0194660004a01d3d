"""GPU check of the Effort detector: speed per precision, verdict flips, GPU decoding.

On a CUDA machine (``benchmarks/gpu_check.sh`` installs what is missing) this
writes a random Effort checkpoint of the production size (CLIP ViT-L/14, the
Effort layout: :data:`~wma_model_server.backends.effort_random.VIT_L14`), then
for each precision (fp32, TF32, fp16, bf16):

* loads it through the server's loader on the GPU (PyTorch's SDPA attention,
  optionally ``torch.compile``) and times forward passes of 27 and 4x27 frames
  (CUDA-synchronised medians), with the peak GPU memory;
* scores 48 realistic face crops and counts fused-verdict flips against fp32 on
  near-band synthetic videos, as ``precision_check.py`` does on the CPU;
* serves it with ``wma model-server`` (a real process) and measures 27-frame
  requests end to end over HTTP (OIP, binary): p50 at one client and frames/s
  at 1, 4 and 16 clients;

and times ``torchvision.io.decode_jpeg`` on the device against OpenCV on the CPU
for the 27 crops. Each forward figure is compared with the floor: ~162 GFLOP per
224 px crop over the GPU's dense peak for that precision (named per GPU below).
Ends with a short table. ``--dry-run``: the same path on the CPU with the tiny
checkpoint (fp32 and bf16, 1 client), seconds; CI runs it.

    bash benchmarks/gpu_check.sh            # on a CUDA machine, about 5 minutes
    bash benchmarks/gpu_check.sh --dry-run  # anywhere
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from crops import face_crops, percentiles
from wma_local.stack import free_port
from wma_wire.protocol import decode_infer_response, encode_infer_request

GFLOP_PER_CROP = 162.0  # ViT-L/14 at 224 px: ~81 GMAC per image
# Dense peak TFLOP/s (no sparsity) by GPU name fragment: fp32, tf32, fp16/bf16.
PEAKS = {
    "H200": {"float32": 67.0, "tf32": 494.0, "float16": 989.0, "bfloat16": 989.0},
    "H100": {"float32": 67.0, "tf32": 494.0, "float16": 989.0, "bfloat16": 989.0},
    "A100": {"float32": 19.5, "tf32": 156.0, "float16": 312.0, "bfloat16": 312.0},
    "L40S": {"float32": 91.6, "tf32": 183.0, "float16": 362.0, "bfloat16": 362.0},
    "L4": {"float32": 30.3, "tf32": 60.0, "float16": 121.0, "bfloat16": 121.0},
}
PRECISIONS = ("float32", "tf32", "float16", "bfloat16")


@dataclass
class Row:
    precision: str
    forward_ms: dict[int, float] = field(default_factory=dict)
    memory_gib: float = float("nan")
    flips: str = "-"
    e2e_p50_ms: float = float("nan")
    fps: dict[int, float] = field(default_factory=dict)


def peak_tflops(name: str, precision: str) -> float | None:
    for key, peaks in PEAKS.items():
        if key in name:
            return peaks[precision]
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(backend: Any, inputs: list[Any], repeats: int) -> float:
    """Median ms of ``backend.predict(inputs)`` (host copies included, synchronised)."""
    backend.predict(inputs)  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        sync(backend.device)
        start = time.perf_counter()
        backend.predict(inputs)
        sync(backend.device)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def in_process(ckpt: Path, opts: argparse.Namespace, frames: list[bytes]) -> dict[str, Row]:
    """Forward times, peak memory and per-frame probabilities for each precision."""
    from precision_check import PRODUCTION, fused_verdicts, near_band_videos
    from precision_check import face_crops as precision_crops
    from wma_core.bundle import load_bundle
    from wma_local.stack import DEFAULT_BUNDLE
    from wma_model_server.backends.effort import EffortBackend
    from wma_wire.frames import FrameLimits, open_frame
    from wma_wire.imaging import decode_image

    limits = FrameLimits()

    def decode(data: bytes, index: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
        frame = decode_image(open_frame(data, "jpeg", limits, index))
        assert frame is not None, "a benchmark crop did not decode"
        return frame

    decoded = [decode(f, i) for i, f in enumerate(frames)]
    check_frames = [decode(f, i) for i, f in enumerate(precision_crops(opts.check_frames))]
    rows: dict[str, Row] = {}
    probs: dict[str, np.ndarray[Any, Any]] = {}
    for precision in opts.precisions:
        row = rows[precision] = Row(precision)
        backend = EffortBackend.from_checkpoint(
            "gpu-check", ckpt, device=opts.device, dtype=precision
        )
        if opts.compile:
            backend.model = torch.compile(backend.model)  # type: ignore[assignment]
        if backend.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(backend.device)
        prepared = [backend.prepare(frame) for frame in decoded]
        for n in (len(prepared), 4 * len(prepared)):
            row.forward_ms[n] = time_forward(backend, (prepared * 4)[:n], opts.repeats)
        if backend.device.type == "cuda":
            row.memory_gib = torch.cuda.max_memory_allocated(backend.device) / 2**30
        checks = [backend.prepare(frame) for frame in check_frames]
        probs[precision] = np.concatenate(
            [backend.predict(checks[i : i + 8]) for i in range(0, len(checks), 8)]
        ).astype(np.float64)
        attention = getattr(backend.model.backbone.config, "_attn_implementation", "?")
        print(f"{precision}: attention {attention}, forward ms {row.forward_ms}", flush=True)
        del backend
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if "float32" in probs:
        bundle = load_bundle(DEFAULT_BUNDLE)
        rng = np.random.default_rng(1)
        videos = near_band_videos(
            probs["float32"], bundle, PRODUCTION, want=opts.videos, per_video=10, rng=rng
        )
        _, expected = fused_verdicts(probs["float32"], videos, bundle, PRODUCTION)
        for precision in opts.precisions:
            _, got = fused_verdicts(probs[precision], videos, bundle, PRODUCTION)
            flips = sum(a != b for a, b in zip(expected, got, strict=True))
            dp = float(np.abs(probs[precision] - probs["float32"]).max())
            rows[precision].flips = f"{flips}/{len(got)} (max dp {dp:.1e})"
    return rows


async def _closed_loop(
    url: str, body: bytes, headers: dict[str, str], clients: int, seconds: float, frames: int
) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:

        async def one() -> None:
            response = await client.post(url, content=body, headers=headers)
            response.raise_for_status()
            reply = decode_infer_response(response.content, dict(response.headers))
            if int((reply.probs >= 0).sum()) != frames:
                raise SystemExit("the server scored a wrong number of frames")

        await asyncio.gather(*(one() for _ in range(clients)))
        end = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < end:
                start = time.perf_counter()
                await one()
                latencies.append((time.perf_counter() - start) * 1000.0)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


def through_server(ckpt: Path, opts: argparse.Namespace, frames: list[bytes], row: Row) -> None:
    """End-to-end latency and frames/s of one precision through ``wma model-server``."""
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("wma")), "model-server", "--model-id", "gpu"]
    cmd += ["--backend", "effort", "--checkpoint", str(ckpt), "--device", opts.device]
    cmd += ["--dtype", row.precision, "--port", str(port), "--log-level", "warning"]
    cmd += ["--max-batch", str(4 * len(frames)), "--max-queue-frames", str(20 * len(frames))]
    if opts.device == "cpu":
        cmd += ["--cpu-threads", "1"]
    if not Path(cmd[0]).exists():  # an environment without the console script
        cmd = [sys.executable, "-m", "wma_cli.main", *cmd[1:]]
    server = subprocess.Popen(cmd, env={**os.environ, "OTEL_TRACES_EXPORTER": "none"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit(f"model server exited with {server.returncode}")
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("model server not ready after 300 s")
            time.sleep(0.25)
        body, headers = encode_infer_request("gpu-check", frames, binary=True)
        url = f"{base}/v2/models/gpu/infer"
        for clients in opts.clients:
            lat = asyncio.run(_closed_loop(url, body, headers, clients, opts.seconds, len(frames)))
            row.fps[clients] = len(lat) * len(frames) / opts.seconds
            if clients == 1:
                row.e2e_p50_ms = percentiles(lat, (50,))[0]
    finally:
        server.terminate()
        server.wait(30)


def decode_comparison(frames: list[bytes], device: str) -> str:
    """torchvision's decode_jpeg on the device against OpenCV on the CPU, 27 crops."""
    import cv2

    def cpu() -> None:
        for f in frames:
            cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR)

    cpu()
    start = time.perf_counter()
    for _ in range(10):
        cpu()
    cpu_ms = (time.perf_counter() - start) * 100.0
    line = f"JPEG decode of {len(frames)} crops: OpenCV on the CPU {cpu_ms:.2f} ms"
    if not device.startswith("cuda"):
        return line + " (GPU decode: CUDA only)"
    try:
        from torchvision.io import decode_jpeg
    except ImportError:
        return line + " (torchvision missing: no GPU decode)"
    data = [torch.frombuffer(bytearray(f), dtype=torch.uint8) for f in frames]
    decode_jpeg(data, device=device)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        decode_jpeg(data, device=device)
    torch.cuda.synchronize()
    gpu_ms = (time.perf_counter() - start) * 100.0
    return line + f", torchvision.io.decode_jpeg on {device} {gpu_ms:.2f} ms (batched)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny checkpoint, seconds")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=4.0, help="per client count")
    parser.add_argument("--repeats", type=int, default=10, help="timed forward passes")
    parser.add_argument("--check-frames", type=int, default=48)
    parser.add_argument("--videos", type=int, default=3000)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    return parser


def main(argv: list[str] | None = None) -> int:
    from wma_model_server.backends.effort_random import TINY, VIT_L14, save_random_checkpoint

    opts = build_parser().parse_args(argv)
    if opts.dry_run:
        opts.device, opts.precisions, opts.clients = "cpu", ["float32", "bfloat16"], [1]
        opts.seconds, opts.repeats, opts.check_frames, opts.videos = 0.5, 2, 12, 60
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --dry-run")
    name = torch.cuda.get_device_name() if opts.device.startswith("cuda") else "cpu"
    print(f"device {name}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    frames = face_crops(27)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wma-gpu-") as tmp:
        ckpt = Path(tmp) / "effort_random.pth"
        save_random_checkpoint(ckpt, TINY if opts.dry_run else VIT_L14, seed=0)
        rows = in_process(ckpt, opts, frames)
        # the dry run serves one precision: its point is the path, not the numbers
        for row in list(rows.values())[: 1 if opts.dry_run else None]:
            through_server(ckpt, opts, frames, row)
            print(f"{row.precision}: e2e p50 {row.e2e_p50_ms:.1f} ms, fps {row.fps}", flush=True)
    decode = decode_comparison(frames, opts.device)
    n1, n4 = len(frames), 4 * len(frames)
    print(f"\n{decode}")
    print(f"GPU {name}; floor: {GFLOP_PER_CROP:g} GFLOP per crop at the dense peak named per GPU")
    print(
        f"| precision | fwd {n1} ms | fwd {n4} ms | x floor ({n1}) | e2e {n1} p50 ms "
        + "".join(f"| fps@{c} " for c in opts.clients)
        + "| GPU GiB | verdict flips |"
    )
    print("|---|---:|---:|---:|---:" + "|---:" * len(opts.clients) + "|---:|---|")
    for row in rows.values():
        peak = peak_tflops(name, row.precision)
        floor_ms = n1 * GFLOP_PER_CROP / peak if peak else None  # GFLOP / TFLOP/s = ms
        ratio = f"{row.forward_ms[n1] / floor_ms:.1f}" if floor_ms else "-"
        fps = "".join(f"| {row.fps.get(c, float('nan')):.0f} " for c in opts.clients)
        print(
            f"| {row.precision} | {row.forward_ms[n1]:.1f} | {row.forward_ms[n4]:.1f} | {ratio} "
            f"| {row.e2e_p50_ms:.1f} {fps}| {row.memory_gib:.2f} | {row.flips} |"
        )
    print(f"(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
