"""Serving benchmark: our model server against KServe and LitServe, same model logic.

The mock model (decode each JPEG with ``cv2.imdecode``, BGR to RGB, mean / 255)
served three ways on loopback, each in its own processes: ``wma model-server
--backend mock`` (OIP v2 with the binary extension, as the gateway calls it), a
KServe Python SDK model (``benchmarks/peers/kserve_mock.py``: v1 ``:predict``
with base64 frames in JSON, as KServe's custom-model docs show) and a LitServe API
(``benchmarks/peers/litserve_mock.py``: ``POST /predict`` JSON, LitServe's
defaults). KServe and LitServe run in their own venv, ``build/peers-venv``,
created from ``requirements/peers.lock`` when absent. Every request carries the
same 27 realistic 224 px JPEG face crops (:mod:`crops`); the request bodies are
encoded once, before timing. Rounds are interleaved (each round runs every
server at every concurrency, in a rotating order) so that other load on the
machine falls on all three alike; reports frames/s, p50 and p99 per server and
concurrency and the ratios of ours to each peer.

    .venv/bin/python benchmarks/peers_bench.py [--rounds 3] [--duration 3] [--concurrency 1 8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from crops import face_crops, percentiles
from wma_local.stack import free_port
from wma_wire.protocol import decode_infer_response, encode_infer_request

REPO = Path(__file__).resolve().parents[1]
PEERS_VENV = REPO / "build" / "peers-venv"
PEERS_LOCK = REPO / "requirements" / "peers.lock"
READY_TIMEOUT_S = 90.0


def ensure_peers_venv() -> Path:
    """The peers' venv python, created from ``requirements/peers.lock`` if absent."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEERS_VENV} from {PEERS_LOCK} (once; a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        # --no-deps: the lock holds every package, dependencies included; resolving
        # them again trips the venv's bundled pip (23.2) on KServe's uvicorn[standard]
        # under --require-hashes ("must have their versions pinned with ==").
        subprocess.run([*pip, "--no-deps", "--require-hashes", "-r", str(PEERS_LOCK)], check=True)
    return python


@dataclass
class Server:
    name: str
    cmd: list[str]
    ready_path: str
    url: str
    body: bytes
    headers: dict[str, str]
    check: Callable[[httpx.Response], int]  # frames scored in a reply (raises if broken)
    process: subprocess.Popen[bytes] | None = None

    def start(self, log_dir: Path) -> None:
        with (log_dir / f"{self.name}.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: LitServe's workers stop with it
                cwd=REPO / "benchmarks" / "peers",
                env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
            )

    def wait_ready(self, base: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}")
            try:
                if httpx.get(base + self.ready_path, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name} not ready after {READY_TIMEOUT_S:g} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def servers(frames: list[bytes], peers_python: Path) -> list[Server]:
    wma = str(Path(sys.executable).with_name("wma"))
    b64 = [base64.b64encode(f).decode("ascii") for f in frames]
    ours_port, kserve_port, lit_port = free_port(), free_port(), free_port()
    oip_body, oip_headers = encode_infer_request("bench", frames, binary=True)

    def ours(r: httpx.Response) -> int:
        reply = decode_infer_response(r.content, dict(r.headers))
        return int((reply.probs >= 0).sum())

    def kserve(r: httpx.Response) -> int:
        return len(r.json()["predictions"])

    def litserve(r: httpx.Response) -> int:
        return len(r.json()["probs"])

    json_headers = {"content-type": "application/json"}
    ms = ["model-server", "--model-id", "mock1", "--backend", "mock"]
    return [
        Server(
            "ours",
            [wma, *ms, "--host", "127.0.0.1", "--port", str(ours_port), "--log-level", "warning"],
            "/v2/health/ready",
            f"http://127.0.0.1:{ours_port}/v2/models/mock1/infer",
            oip_body,
            oip_headers,
            ours,
        ),
        Server(
            "kserve",
            [str(peers_python), "kserve_mock.py", str(kserve_port)],
            "/v2/health/ready",
            f"http://127.0.0.1:{kserve_port}/v1/models/mock:predict",
            json.dumps({"instances": b64}).encode(),
            json_headers,
            kserve,
        ),
        Server(
            "litserve",
            [str(peers_python), "litserve_mock.py", str(lit_port)],
            "/health",
            f"http://127.0.0.1:{lit_port}/predict",
            json.dumps({"images": b64}).encode(),
            json_headers,
            litserve,
        ),
    ]


async def run_load(server: Server, concurrency: int, duration: float, frames: int) -> list[float]:
    """Latencies (ms) of closed-loop clients over ``duration`` seconds."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:

        async def one() -> None:
            response = await client.post(server.url, content=server.body, headers=server.headers)
            response.raise_for_status()
            if server.check(response) != frames:
                raise SystemExit(f"{server.name} scored a wrong number of frames")

        await asyncio.gather(*(one() for _ in range(concurrency)))  # warm connections
        end = time.perf_counter() + duration

        async def worker() -> None:
            while time.perf_counter() < end:
                start = time.perf_counter()
                await one()
                latencies.append((time.perf_counter() - start) * 1000.0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per server per round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--frames", type=int, default=27)
    parser.add_argument(
        "--servers", nargs="+", default=["ours", "kserve", "litserve"], help="(to profile one)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    peers_python = ensure_peers_venv()
    frames = face_crops(args.frames)
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()}; {len(frames)} JPEG crops/request")
    log_dir = REPO / "build" / "peers-bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    group = [s for s in servers(frames, peers_python) if s.name in args.servers]
    results: dict[tuple[str, int], list[float]] = defaultdict(list)
    wall: dict[tuple[str, int], float] = defaultdict(float)
    try:
        for server in group:
            server.start(log_dir)
        for server in group:
            server.wait_ready(server.url.split("/v")[0].split("/predict")[0])
        for r in range(args.rounds):
            order = group[r % len(group) :] + group[: r % len(group)]
            for concurrency in args.concurrency:
                for server in order:
                    lat = asyncio.run(run_load(server, concurrency, args.duration, len(frames)))
                    results[server.name, concurrency] += lat
                    wall[server.name, concurrency] += args.duration
        print("\n| server | clients | requests | frames/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        summary: dict[tuple[str, int], tuple[float, float, float]] = {}
        for concurrency in args.concurrency:
            for server in group:
                lat = results[server.name, concurrency]
                fps = len(lat) * len(frames) / wall[server.name, concurrency]
                p50, p99 = percentiles(lat, (50, 99))
                summary[server.name, concurrency] = (fps, p50, p99)
                print(
                    f"| {server.name} | {concurrency} | {len(lat)} | {fps:.0f} "
                    f"| {p50:.1f} | {p99:.1f} |"
                )
        print("\n| ours / peer | clients | frames/s | p50 | p99 |\n|---|---:|---:|---:|---:|")
        for peer in ("kserve", "litserve"):
            for concurrency in args.concurrency:
                if ("ours", concurrency) not in summary or (peer, concurrency) not in summary:
                    continue
                o, p = summary["ours", concurrency], summary[peer, concurrency]
                print(
                    f"| ours / {peer} | {concurrency} | {o[0] / p[0]:.2f}x "
                    f"| {o[1] / p[1]:.2f}x | {o[2] / p[2]:.2f}x |"
                )
        print(f"\nload average after the run: {os.getloadavg()}")
    finally:
        for server in group:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
