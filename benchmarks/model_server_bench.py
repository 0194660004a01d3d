"""Model-server benchmark: frames/s and latency p50/p95 versus client concurrency.

Starts a real ``wma model-server`` process on a loopback port for each backend
(``mock``, and ``effort`` with a tiny random-weight checkpoint written to a temp
dir), then for each concurrency level runs closed-loop clients that POST
``/check_frame_batch`` with ``--frames`` JPEG frames each, for ``--duration``
seconds. Prints a Markdown table. Bounded in time: startup timeout 120 s, each
point ``--duration`` seconds.

    .venv/bin/python benchmarks/model_server_bench.py --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import io
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tiny_effort_checkpoint(path: Path, hidden: int, layers: int, image: int, patch: int) -> None:
    """Random weights in the Effort checkpoint layout (SVD residual attention, Linear head)."""
    import torch

    g = torch.Generator().manual_seed(0)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.05

    grid, rank, mlp = image // patch, 4, hidden * 4
    sd = {
        "backbone.embeddings.class_embedding": rnd(hidden),
        "backbone.embeddings.patch_embedding.weight": rnd(hidden, 3, patch, patch),
        "backbone.embeddings.position_embedding.weight": rnd(grid * grid + 1, hidden),
    }
    for name in ("backbone.pre_layrnorm", "backbone.post_layernorm"):
        sd |= {f"{name}.weight": torch.ones(hidden), f"{name}.bias": torch.zeros(hidden)}
    for i in range(layers):
        p = f"backbone.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            q = f"{p}.self_attn.{proj}"
            sd |= {f"{q}.weight_main": rnd(hidden, hidden), f"{q}.bias": rnd(hidden)}
            sd |= {f"{q}.U_residual": rnd(hidden, rank), f"{q}.S_residual": rnd(rank)}
            sd |= {f"{q}.V_residual": rnd(rank, hidden)}
        for ln in ("layer_norm1", "layer_norm2"):
            sd |= {f"{p}.{ln}.weight": torch.ones(hidden), f"{p}.{ln}.bias": torch.zeros(hidden)}
        sd |= {f"{p}.mlp.fc1.weight": rnd(mlp, hidden), f"{p}.mlp.fc1.bias": rnd(mlp)}
        sd |= {f"{p}.mlp.fc2.weight": rnd(hidden, mlp), f"{p}.mlp.fc2.bias": rnd(hidden)}
    sd |= {"head.weight": rnd(2, hidden), "head.bias": rnd(2)}
    config = {"num_heads": max(hidden // 64, 2), "use_arcface_head": False}
    torch.save({"state_dict": sd, "model_config": config}, path)


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
    deadline = time.monotonic() + 120
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
    raise SystemExit("server did not become ready within 120 s")


async def run_point(url: str, frames: list[bytes], concurrency: int, duration: float) -> str:
    files = [("files", (f"{i}.jpg", f, "image/jpeg")) for i, f in enumerate(frames)]
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        await client.post("/check_frame_batch", files=files)  # warm the connection path
        stop = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await client.post("/check_frame_batch", files=files)
                if r.status_code == 200 and len(r.json()["probs"]) == len(frames):
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    p50, p95 = (np.percentile(latencies, q) * 1000 for q in (50, 95))
    fps = len(latencies) * len(frames) / elapsed
    return f"| {concurrency} | {len(latencies)} | {fps:.0f} | {p50:.1f} | {p95:.1f} | {errors} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument("--frames", type=int, default=10, help="frames per request")
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--backends", nargs="+", default=["mock", "effort"])
    parser.add_argument("--effort", default="32,2,28,14", help="hidden,layers,image,patch")
    parser.add_argument("--cpu-threads", type=int, default=None, help="effort: torch threads")
    opts = parser.parse_args()
    frames = jpeg_frames(opts.frames, opts.size)
    print(
        f"python {platform.python_version()}, {opts.frames} frames/request of "
        f"{opts.size}x{opts.size} JPEG, {opts.duration:g} s per point\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for backend in opts.backends:
            server_args = ["--model-id", f"bench-{backend}", "--backend", backend]
            label = backend
            if backend == "effort":
                hidden, layers, image, patch = (int(x) for x in opts.effort.split(","))
                ckpt = Path(tmp) / "effort.pth"
                tiny_effort_checkpoint(ckpt, hidden, layers, image, patch)
                server_args += ["--checkpoint", str(ckpt)]
                threads = "torch default threads"
                if opts.cpu_threads:
                    server_args += ["--cpu-threads", str(opts.cpu_threads)]
                    threads = f"--cpu-threads {opts.cpu_threads}"
                label = f"effort (hidden {hidden}, {layers} layers, {image}px, CPU fp32, {threads})"
            port = free_port()
            proc = start(server_args, port)
            try:
                print(f"### {label}\n")
                print("| concurrency | requests | frames/s | p50 ms | p95 ms | errors |")
                print("|---|---|---|---|---|---|")
                for c in opts.concurrency:
                    print(
                        asyncio.run(run_point(f"http://127.0.0.1:{port}", frames, c, opts.duration))
                    )
                print()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
