"""Gateway benchmark: 27-frame batches through the local mock stack.

Starts four mock model servers and a gateway (``wma gateway`` in its own process)
on loopback, then measures, in one run, end-to-end latency of ``POST /v1/analyze``
at concurrency 1, 4 and 16 and, as the baseline, a direct OIP call to one model
server with the same frames. Reports p50/p95/p99 and the gateway's overhead
(gateway p50 minus direct p50 at the same concurrency).

    .venv/bin/python benchmarks/gateway_bench.py [--requests 64] [--frame-size 112]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
import numpy as np
from wma_local.samples import grey_frame
from wma_local.stack import LocalStack, free_port
from wma_wire.protocol import encode_infer_request

READY_TIMEOUT_S = 30.0


async def _load(send: Callable[[], Awaitable[None]], concurrency: int, total: int) -> list[float]:
    """Latencies (ms) of ``total`` calls of ``send`` with ``concurrency`` in flight."""
    latencies: list[float] = []
    queue = iter(range(total))

    async def worker() -> None:
        for _ in queue:
            start = time.perf_counter()
            await send()
            latencies.append((time.perf_counter() - start) * 1000.0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until ``GET url`` answers 200; SystemExit when ``proc`` exits or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited with {proc.returncode} before it was ready")
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        if time.monotonic() >= deadline:
            raise SystemExit(f"gateway not ready at {url} after {timeout_s:g} s: {last}")
        time.sleep(0.1)


def _pct(values: list[float]) -> str:
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"{p50:8.1f} {p95:8.1f} {p99:8.1f}"


async def bench(gateway: str, model_url: str, frames: list[bytes], requests: int) -> None:
    files = [("files", (f"{i}.png", f, "image/png")) for i, f in enumerate(frames)]
    body, headers = encode_infer_request("bench", frames)
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        failures = {"gateway": 0, "degraded": 0, "direct": 0}

        async def via_gateway() -> None:
            r = await client.post(
                f"{gateway}/v1/analyze", data={"participant_id": "b"}, files=files
            )
            if r.status_code != 200:
                failures["gateway"] += 1
            elif r.json()["degraded"]:
                failures["degraded"] += 1

        async def direct() -> None:
            r = await client.post(
                f"{model_url}/v2/models/9rfa62j1/infer", content=body, headers=headers
            )
            failures["direct"] += r.status_code != 200

        for send in (via_gateway, direct):  # warm up both paths
            await _load(send, 2, 4)
        failures.update(gateway=0, degraded=0, direct=0)
        print(f"{'path':<22} {'conc':>4} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
        for concurrency in (1, 4, 16):
            n = max(requests, concurrency * 4)
            gw = await _load(via_gateway, concurrency, n)
            dr = await _load(direct, concurrency, n)
            print(f"{'gateway (4 models)':<22} {concurrency:>4} {n:>4} {_pct(gw)}")
            print(f"{'direct (1 model)':<22} {concurrency:>4} {n:>4} {_pct(dr)}")
            overhead = float(np.percentile(gw, 50) - np.percentile(dr, 50))
            print(f"{'overhead p50':<22} {concurrency:>4} {'':>4} {overhead:8.1f}")
            print(
                f"  not ok: gateway non-200 {failures['gateway']}, gateway degraded "
                f"{failures['degraded']}, direct non-200 {failures['direct']}"
            )
            failures.update(gateway=0, degraded=0, direct=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per level")
    parser.add_argument("--frame-size", type=int, default=112, help="square frame side, px")
    return parser


def main() -> int:
    args = build_parser().parse_args()
    frames = [grey_frame(60 + i, size=args.frame_size) for i in range(27)]
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, "
        f"python {platform.python_version()}, {len(frames)} frames of "
        f"{args.frame_size}px PNG ({sum(map(len, frames))} bytes)"
    )
    with LocalStack(legacy=False) as stack:
        assert stack.config_path is not None
        port = free_port()
        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wma_cli.main",
                "gateway",
                "--config",
                str(stack.config_path),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(gateway, f"{url}/readyz")
            asyncio.run(bench(url, stack.models["9rfa62j1"].url, frames, args.requests))
        finally:
            gateway.terminate()
            gateway.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
