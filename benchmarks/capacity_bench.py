"""Capacity of one model-server replica: the frames/s it sustains at the latency target.

Starts a real ``wma model-server`` process on a loopback port (``--backend mock``
by default; ``--url`` measures a replica that is already running, e.g. a GPU
one), then offers it an open-loop load of OIP infer requests of ``--frames``
JPEG face crops each (one participant's batch: 10 frames every 2 s), at request
rates rising geometrically (``--start-rps``, ``--step``), ``--duration`` seconds
each. A rate is sustained when the p99 latency of its requests is within
``--p99-ms`` and none failed (a 429 from a full queue is a failure). It reports
the highest sustained rate in frames/s, the participants per replica that makes
(frames/s / (frames / period)), and the mean of the server's own
``wma_ms_queue_frames`` gauge at that rate (sampled from ``/metrics``): the
autoscaler's per-replica target (docs/capacity.md). Bounded: at most
``--max-steps`` rates; it stops at the first rate that is not sustained.

    .venv/bin/python benchmarks/capacity_bench.py
    # a GPU replica already serving (its model id and URL):
    .venv/bin/python benchmarks/capacity_bench.py --url http://10.0.0.7:8000 \\
        --model-id 9rfa62j1 --start-rps 2 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from wma_local.threaded import free_port
from wma_wire.protocol import encode_infer_request

DEMO_FRAMES = Path(__file__).resolve().parents[1] / "services/local/wma_local/demo_frames"


@dataclass
class Step:
    rps: float
    frames_per_s: float
    sent: int
    failed: int
    p50_ms: float
    p99_ms: float
    mean_queue_frames: float
    sustained: bool


def demo_jpegs(count: int) -> list[bytes]:
    files = sorted(DEMO_FRAMES.glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no demo frames under {DEMO_FRAMES}")
    return [files[i % len(files)].read_bytes() for i in range(count)]


def start_server(model_id: str, backend_args: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "wma_cli.main", "model-server", "--model-id", model_id]
    cmd += ["--host", "127.0.0.1", "--port", str(port), *backend_args]
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"model server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("model server did not become ready within 600 s")


def queue_frames(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "wma_ms_queue_frames":
            return float(sum(s.value for s in family.samples))
    return 0.0


async def run_step(
    client: httpx.AsyncClient, url: str, model_id: str, frames: list[bytes], rps: float, secs: float
) -> Step:
    """Open loop: one request every 1/rps s for ``secs``, whatever the answers do."""
    body, headers = encode_infer_request("capacity", frames, binary=True)
    target = f"{url}/v2/models/{model_id}/infer"
    latencies: list[float] = []
    failed = 0
    queue: list[float] = []

    async def one() -> None:
        nonlocal failed
        t0 = time.monotonic()
        try:
            response = await client.post(target, content=body, headers=headers)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        latencies.append(time.monotonic() - t0)
        failed += not ok

    async def sample() -> None:
        while True:
            try:
                queue.append(queue_frames((await client.get(f"{url}/metrics")).text))
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    tasks = []
    start = time.monotonic()
    n = int(rps * secs)
    for i in range(n):
        delay = start + i / rps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    sampler.cancel()
    lat = np.array(latencies) * 1000.0
    p50, p99 = (float(np.percentile(lat, q)) for q in (50, 99))
    return Step(
        rps=rps,
        frames_per_s=rps * len(frames),
        sent=n,
        failed=failed,
        p50_ms=round(p50, 1),
        p99_ms=round(p99, 1),
        mean_queue_frames=round(float(np.mean(queue)) if queue else 0.0, 1),
        sustained=False,
    )


async def measure(args: argparse.Namespace, url: str) -> list[Step]:
    frames = demo_jpegs(args.frames)
    steps: list[Step] = []
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits) as client:
        await run_step(client, url, args.model_id, frames, 2.0, 1.0)  # warm-up
        rps = args.start_rps
        for _ in range(args.max_steps):
            step = await run_step(client, url, args.model_id, frames, rps, args.duration)
            step.sustained = step.failed == 0 and step.p99_ms <= args.p99_ms
            steps.append(step)
            verdict = "ok" if step.sustained else "NOT sustained"
            print(
                f"{step.rps:7.2f} req/s {step.frames_per_s:8.1f} frames/s"
                f"  p50 {step.p50_ms:7.1f} ms  p99 {step.p99_ms:7.1f} ms"
                f"  failed {step.failed:3d}  queue {step.mean_queue_frames}  {verdict}",
                flush=True,
            )
            if not step.sustained:
                break
            rps *= args.step
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running model server (default: start a mock one)")
    parser.add_argument("--model-id", default="9rfa62j1")
    parser.add_argument("--frames", type=int, default=10, help="frames per request")
    parser.add_argument("--period-s", type=float, default=2.0, help="a participant's cadence")
    parser.add_argument("--p99-ms", type=float, default=1000.0, help="the latency target")
    parser.add_argument("--start-rps", type=float, default=4.0)
    parser.add_argument("--step", type=float, default=1.5)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per rate")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(args.model_id, ["--backend", "mock"])
    try:
        steps = asyncio.run(measure(args, url.rstrip("/")))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    passed = [s for s in steps if s.sustained]
    best = passed[-1] if passed else None
    per_participant = args.frames / args.period_s
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
        "server": url if args.url else "mock backend, started here",
        "frames_per_request": args.frames,
        "p99_target_ms": args.p99_ms,
        "sustained_frames_per_s": best.frames_per_s if best else 0.0,
        "participants_per_replica": int(best.frames_per_s / per_participant) if best else 0,
        "queue_frames_at_sustained": best.mean_queue_frames if best else None,
        "steps": [asdict(s) for s in steps],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "steps"}, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())
