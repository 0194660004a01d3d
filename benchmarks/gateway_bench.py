"""Gateway benchmark: the gateway against a direct plain client, same four model servers.

Starts four mock model servers (the local stack's) and two gateway processes
(``wma gateway``) on loopback. Every request carries the same 27 realistic 224 px
JPEG face crops (:mod:`crops`). Three ways to get a verdict for them, interleaved
in rounds in one run:

* **gateway**: ``POST /v1/analyze`` through the client SDK
  (:class:`wma_fusion.client.FusionClient`, one kept-alive pool, as the meeting
  server uses it), the local stack's config: ``fanout.shared_memory`` on, each
  frame decoded once by the gateway;
* **gateway, encoded**: the same with ``fanout.shared_memory`` off, the members
  decoding the JPEGs they are sent (as in a cluster, where they run elsewhere);
* **direct**: what the old integration plan had the meeting server do itself: a
  new ``aiohttp.ClientSession`` per call, the legacy multipart
  ``/check_frame_batch`` to all four servers in parallel, then the same
  aggregation, calibration (the stack's bundle), noisy-OR and verdict with
  :mod:`wma_core` in the client.

All must reach the same fused score (checked). Reports p50/p95/p99 per path and
concurrency and the ratio of each gateway's p50 to the direct client's.

    .venv/bin/python benchmarks/gateway_bench.py [--requests 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import yaml
from crops import face_crops, percentiles
from wma_core import decide, fuse, parse_aggregator
from wma_core.bundle import CalibratorBundle, load_bundle
from wma_fusion.client import FusionClient
from wma_fusion.upstream import LEGACY_QUERY
from wma_local.stack import DEFAULT_BUNDLE, LocalStack, free_port

READY_TIMEOUT_S = 30.0


async def _load(send: Callable[[], Awaitable[float]], concurrency: int, total: int) -> list[float]:
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


async def direct_verdict(
    endpoints: dict[str, str], frames: list[bytes], bundle: CalibratorBundle
) -> float:
    """The old plan's client: a session per call, four legacy calls, fusion here."""

    async def one(session: aiohttp.ClientSession, url: str) -> list[float]:
        form = aiohttp.FormData()
        for i, frame in enumerate(frames):
            form.add_field("files", frame, filename=f"frame{i}.jpg", content_type="image/jpeg")
        async with session.post(f"{url}/check_frame_batch", data=form, params=LEGACY_QUERY) as r:
            r.raise_for_status()
            probs: list[float] = (await r.json())["probs"]
            return probs

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        replies = await asyncio.gather(*(one(session, url) for url in endpoints.values()))
    calibrated: dict[str, float | None] = {}
    for model_id, probs in zip(endpoints, replies, strict=True):
        calibrator = bundle.models[model_id]
        aggregated = parse_aggregator(calibrator.aggregator)(probs)
        calibrated[model_id] = calibrator.curve(aggregated) if aggregated is not None else None
    fused = fuse(calibrated, bundle.output_ranges(), bundle.fusion)
    decide(fused, bundle.thresholds)
    if fused.score is None:
        raise SystemExit("the direct client's fusion has no score")
    return fused.score


LABELS = {
    "gateway": "gateway (SDK, kept alive; shared memory)",
    "encoded": "gateway (SDK, kept alive; encoded frames)",
    "direct": "direct (session per call)",
}


async def bench(
    gateways: dict[str, str],
    endpoints: dict[str, str],
    frames: list[bytes],
    requests: int,
    rounds: int,
) -> None:
    """``gateways``: ``{"gateway": url, "encoded": url}``."""
    bundle = load_bundle(DEFAULT_BUNDLE)
    results: dict[tuple[str, int], list[float]] = defaultdict(list)
    scores: dict[str, set[float]] = defaultdict(set)
    clients = {name: FusionClient(url, timeout=60.0) for name, url in gateways.items()}

    def via(name: str) -> Callable[[], Awaitable[float]]:
        async def send() -> float:
            answer = await clients[name].process_frames(frames, "bench")
            if answer["degraded"]:
                raise SystemExit(f"degraded answer: {answer['models']}")
            scores[name].add(round(answer["fusion_score"], 12))
            return float(answer["fusion_score"])

        return send

    async def direct() -> float:
        score = await direct_verdict(endpoints, frames, bundle)
        scores["direct"].add(round(score, 12))
        return score

    paths = [(name, via(name)) for name in gateways] + [("direct", direct)]
    try:
        for _, send in paths:  # warm up every path
            await _load(send, 2, 4)
        for r in range(rounds):
            for concurrency in (1, 8):
                for name, send in paths if r % 2 == 0 else paths[::-1]:
                    n = max(requests, 2 * concurrency)
                    results[name, concurrency] += await _load(send, concurrency, n)
    finally:
        for client in clients.values():
            await client.aclose()
    agreed = set().union(*scores.values())
    if len(agreed) != 1:
        raise SystemExit(f"the paths disagree: {dict(scores)}")
    print(f"every path: fused score {agreed.pop():.6f} on every request\n")
    print("| path | concurrency | n | p50 ms | p95 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    p50s = {}
    for concurrency in (1, 8):
        for name, _ in paths:
            lat = results[name, concurrency]
            p50, p95, p99 = percentiles(lat)
            p50s[name, concurrency] = p50
            print(
                f"| {LABELS[name]} | {concurrency} | {len(lat)} | {p50:.1f} | {p95:.1f} "
                f"| {p99:.1f} |"
            )
    for name in gateways:
        for concurrency in (1, 8):
            ratio = p50s[name, concurrency] / p50s["direct", concurrency]
            print(f"{LABELS[name]} p50 / direct p50 at concurrency {concurrency}: {ratio:.2f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=32, help="requests per path per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    frames = face_crops(27)
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()}; "
        f"{len(frames)} JPEG crops of 224 px ({sum(map(len, frames)) // 1024} KiB)"
    )
    with LocalStack(legacy=False) as stack:
        assert stack.config_path is not None and stack.workdir is not None
        doc = yaml.safe_load(stack.config_path.read_text())
        doc["fanout"]["shared_memory"]["enabled"] = False
        encoded_config = stack.workdir / "gateway-encoded.yaml"
        encoded_config.write_text(yaml.safe_dump(doc))
        processes: list[subprocess.Popen[bytes]] = []
        try:
            urls = {}
            for name, config in (("gateway", stack.config_path), ("encoded", encoded_config)):
                port = free_port()
                cmd = [str(Path(sys.executable).with_name("wma")), "gateway"]
                cmd += ["--config", str(config), "--port", str(port), "--log-level", "warning"]
                env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
                processes.append(subprocess.Popen(cmd, env=env))
                urls[name] = f"http://127.0.0.1:{port}"
                wait_ready(processes[-1], f"{urls[name]}/readyz")
            asyncio.run(bench(urls, stack.endpoints(), frames, args.requests, args.rounds))
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)
    print(f"load average after the run: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
