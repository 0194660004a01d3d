"""End-to-end benchmark: 27 JPEG face crops per request through ``wma up``.

Starts ``wma up`` (four mock model servers, the mock legacy server and the
gateway, each its own process as a user runs it) on a free loopback port and
sends ``POST /v1/analyze`` with 27 realistic 224 px JPEG face crops (~18 KiB each,
:mod:`crops`) through the client SDK (:class:`wma_fusion.client.FusionClient`,
one kept-alive connection pool, as the meeting server runs it). Measures
sequential requests, then 8 and 32 concurrent participants (each a closed loop:
send, wait for the answer, send again), and reports p50/p95/p99, frames/s, the
CPU time each request cost the stack's processes (a figure that other jobs on
the machine disturb less than latency) and the resident memory of every process.

    .venv/bin/python benchmarks/e2e_bench.py [--requests 200] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from crops import (
    child_pids,
    cpu_seconds,
    face_crops,
    percentiles,
    process_name,
    rss_mib,
    shmem_mib,
)
from wma_fusion.client import FusionClient
from wma_local.stack import free_port

READY_TIMEOUT_S = 60.0


def start_stack(port: int, log_dir: Path) -> subprocess.Popen[bytes]:
    """``wma up`` on ``port``, ready (its gateway's ``/readyz`` answers 200)."""
    cmd = [str(Path(sys.executable).with_name("wma")), "up", "--port", str(port)]
    cmd += ["--log-dir", str(log_dir)]
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
    with (log_dir / "up.log").open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"wma up exited with {proc.returncode}; see {log_dir}/up.log")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGINT)
            raise SystemExit(f"wma up not ready after {READY_TIMEOUT_S:g} s")
        time.sleep(0.2)


def stack_processes(up: int) -> dict[str, int]:
    """The gateway (``wma up`` itself) and its model servers, by name."""
    named = {"gateway (wma up)": up}
    for pid in child_pids(up):
        name = process_name(pid)
        if name.startswith("model-server"):
            named[name] = pid
    return named


async def load(
    url: str, frames: list[bytes], concurrency: int, total: int
) -> tuple[list[float], float, int]:
    """Latencies (ms), wall time (s) and failed or degraded answers of ``total`` calls."""
    latencies: list[float] = []
    failures = 0
    jobs = iter(range(total))
    async with FusionClient(url, timeout=30.0) as client:
        # one warm-up call per participant: connections open, caches filled (past the
        # members' queues, 32 participants of 27 frames, some are refused: not counted)
        await asyncio.gather(
            *(client.process_frames(frames, f"p{i}") for i in range(concurrency)),
            return_exceptions=True,
        )

        async def participant(index: int) -> None:
            nonlocal failures
            for _ in jobs:
                start = time.perf_counter()
                try:
                    answer = await client.process_frames(frames, f"p{index}")
                    failures += bool(answer.get("degraded"))
                except Exception:
                    failures += 1
                latencies.append((time.perf_counter() - start) * 1000.0)

        started = time.perf_counter()
        await asyncio.gather(*(participant(i) for i in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, wall, failures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--frames", type=int, default=27, help="face crops per request")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    frames = face_crops(args.frames)
    kib = sum(map(len, frames)) / len(frames) / 1024
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(f"{len(frames)} JPEG face crops per request, 224 px, mean {kib:.1f} KiB")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="wma-e2e-") as tmp:
        proc = start_stack(port, Path(tmp))
        url = f"http://127.0.0.1:{port}"
        try:
            procs = stack_processes(proc.pid)
            print(
                "| participants | requests | p50 ms | p95 ms | p99 ms | frames/s "
                "| CPU ms/request: gateway | model servers | failed |"
            )
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for concurrency in args.concurrency:
                total = max(args.requests, 2 * concurrency)
                before = {name: cpu_seconds(pid) for name, pid in procs.items()}
                lat, wall, failed = asyncio.run(load(url, frames, concurrency, total))
                used = {n: cpu_seconds(pid) - before[n] for n, pid in procs.items()}
                calls = total + concurrency  # the warm-up calls count too
                gateway_ms = used.pop("gateway (wma up)") * 1000.0 / calls
                models_ms = sum(used.values()) * 1000.0 / calls
                p50, p95, p99 = percentiles(lat)
                fps = len(lat) * len(frames) / wall
                print(
                    f"| {concurrency} | {len(lat)} | {p50:.1f} | {p95:.1f} | {p99:.1f} "
                    f"| {fps:.0f} | {gateway_ms:.1f} | {models_ms:.1f} | {failed} |",
                    flush=True,
                )
            # RssShmem: the gateway's /dev/shm region (fanout.shared_memory), the same
            # pages in every process that touched them, not a copy in each
            print("\n| process | RSS MiB | of it shared memory MiB |\n|---|---:|---:|")
            for name, pid in procs.items():
                print(f"| {name} | {rss_mib(pid):.0f} | {shmem_mib(pid):.0f} |")
            print(f"load average after the run: {os.getloadavg()}")
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
