"""Model-server benchmark: frames/s and latency p50/p95 versus client concurrency.

Starts a real ``wma model-server`` process on a loopback port for each backend
(``mock``, and ``effort`` with a random-weight checkpoint in the real Effort
layout written to a temp dir: ``--effort-size tiny`` (hidden 32, 2 layers, 28 px)
or ``full`` (CLIP ViT-L/14, 224 px, ~300 M parameters, ~1.2 GB on disk)), then
for each concurrency level runs closed-loop clients that POST
``/check_frame_batch`` with ``--frames`` JPEG frames each, for ``--duration``
seconds. Per point it also reads the server's own ``/metrics``: mean frames per
forward pass and mean forward-pass time. Prints Markdown tables. Bounded in
time: startup timeout 600 s, each point ``--duration`` seconds.

    .venv/bin/python benchmarks/model_server_bench.py --duration 5
    .venv/bin/python benchmarks/model_server_bench.py --duration 5 --cpu-threads 0 1
    # on a GPU host: the production size, 27-frame requests, bf16
    .venv/bin/python benchmarks/model_server_bench.py --backends effort --effort-size full \
        --device cuda --dtype bfloat16 --frames 27 --concurrency 1 4 16 --duration 20 \
        --max-queue-frames 512
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from wma_local.threaded import free_port


def jpeg_frames(count: int, size: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
        frames.append(buf.getvalue())
    return frames


def start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "wma_cli.main", "model-server", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).is_success:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("server did not become ready within 600 s")


async def server_counters(client: httpx.AsyncClient) -> dict[str, float]:
    """Sums and counts of the batch-size and forward-time histograms."""
    text = (await client.get("/metrics")).text
    wanted = {"wma_ms_batch_frames", "wma_ms_inference_seconds"}
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        if family.name in wanted
        for sample in family.samples
        if sample.name.endswith(("_sum", "_count"))
    }


async def run_point(url: str, frames: list[bytes], concurrency: int, duration: float) -> str:
    files = [("files", (f"{i}.jpg", f, "image/jpeg")) for i, f in enumerate(frames)]
    latencies: list[float] = []
    errors: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency + 1)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        await client.post("/check_frame_batch", files=files)  # warm the connection path
        before = await server_counters(client)
        stop = time.perf_counter() + duration

        async def worker() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await client.post("/check_frame_batch", files=files)
                if r.status_code == 200 and len(r.json()["probs"]) == len(frames):
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[r.status_code] = errors.get(r.status_code, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        after = await server_counters(client)
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    passes = delta.get("wma_ms_batch_frames_count", 0.0)
    mean_batch = delta.get("wma_ms_batch_frames_sum", 0.0) / passes if passes else 0.0
    forward_ms = 1000 * delta.get("wma_ms_inference_seconds_sum", 0.0) / passes if passes else 0.0
    p50, p95 = (np.percentile(latencies, q) * 1000 if latencies else float("nan") for q in (50, 95))
    fps = len(latencies) * len(frames) / elapsed
    failed = ", ".join(f"{n}x{code}" for code, n in sorted(errors.items())) or "0"
    return (
        f"| {concurrency} | {len(latencies)} | {fps:.0f} | {p50:.1f} | {p95:.1f} "
        f"| {mean_batch:.1f} | {forward_ms:.1f} | {failed} |"
    )


def effort_servers(opts: argparse.Namespace, tmp: Path) -> list[tuple[list[str], str]]:
    """Server arguments and a label per ``--cpu-threads`` value (0: torch's default)."""
    from wma_model_server.backends.effort_random import TINY, VIT_L14, save_random_checkpoint

    shape = VIT_L14 if opts.effort_size == "full" else TINY
    ckpt = tmp / f"effort-{opts.effort_size}.pth"
    save_random_checkpoint(ckpt, shape)
    args = ["--checkpoint", str(ckpt), "--device", opts.device, "--dtype", opts.dtype]
    size = f"hidden {shape.hidden}, {shape.layers} layers, {shape.image} px"
    servers = []
    for threads in opts.cpu_threads:
        extra = ["--cpu-threads", str(threads)] if threads else []
        note = f", --cpu-threads {threads}" if threads else ""
        label = f"effort {opts.effort_size} ({size}, {opts.device}, {opts.dtype}{note})"
        servers.append(([*args, *extra], label))
    return servers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument("--frames", type=int, default=10, help="frames per request")
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--backends", nargs="+", default=["mock", "effort"])
    parser.add_argument("--effort-size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default="cpu", help="effort: cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="auto", help="effort: auto, float32, bfloat16, ...")
    parser.add_argument(
        "--cpu-threads",
        type=int,
        nargs="+",
        default=[0],
        help="effort: torch threads, one server per value (0: torch's default)",
    )
    parser.add_argument("--max-batch", type=int, default=None, help="server --max-batch")
    parser.add_argument("--max-queue-frames", type=int, default=None, help="server queue bound")
    return parser


def main() -> int:
    opts = build_parser().parse_args()
    frames = jpeg_frames(opts.frames, opts.size)
    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{opts.frames} frames/request of {opts.size}x{opts.size} JPEG, "
        f"{opts.duration:g} s per point\n"
    )
    common: list[str] = []
    if opts.max_batch:
        common += ["--max-batch", str(opts.max_batch)]
    if opts.max_queue_frames:
        common += ["--max-queue-frames", str(opts.max_queue_frames)]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        servers: list[tuple[list[str], str]] = []
        for backend in opts.backends:
            base = ["--model-id", f"bench-{backend}", "--backend", backend, *common]
            if backend == "effort":
                servers += [([*base, *extra], label) for extra, label in effort_servers(opts, tmp)]
            else:
                servers.append((base, backend))
        for server_args, label in servers:
            port = free_port()
            proc = start(server_args, port)
            try:
                print(f"### {label}\n")
                print(
                    "| concurrency | requests | frames/s | p50 ms | p95 ms "
                    "| frames/pass | forward ms | errors |"
                )
                print("|---:|---:|---:|---:|---:|---:|---:|---|")
                for c in opts.concurrency:
                    url = f"http://127.0.0.1:{port}"
                    print(asyncio.run(run_point(url, frames, c, opts.duration)), flush=True)
                print()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
