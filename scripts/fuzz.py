"""``make fuzz``: schemathesis over both services' OpenAPI documents with more examples
than ``make test`` runs, plus the hostile cases, against real processes.

Starts two mock model servers (``wma model-server``) and a gateway over them
(``wma gateway``), each a process on a loopback port, then: schemathesis on one
model server and on the gateway (``--examples`` per operation and mode), the
hostile multipart and OIP cases on each (every one on one kept-alive connection,
followed by a probe on that same connection), and all of it again with tokens on
(``WMA_GATEWAY_TOKEN``, ``WMA_MS_TOKEN``). A traceback or an ERROR line in any
server's log is a failure too. Prints what was sent and every failure; exit status
1 when anything failed. The cases live in ``tests_support/fuzzing.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests_support"))

from fuzzing import fuzz_openapi, hostile_cases, run_hostile  # noqa: E402
from gateway_harness import write_gateway_config  # noqa: E402
from live_processes import GatewayProcess, reap, start_model_server  # noqa: E402
from wma_local.samples import write_synthetic_bundle  # noqa: E402

IDS = ("9rfa62j1", "1mjgo9w1")


def _run(workdir: Path, examples: int, token: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WMA_", "OTEL_"))}
    headers: dict[str, str] = {}
    if token is not None:
        env["WMA_MS_TOKEN"] = f"ms-{token}"
        env["WMA_GATEWAY_TOKEN"] = f"gw-{token}"
    failures: list[str] = []
    members = {}
    gateway = None
    try:
        for mid in IDS:
            members[mid] = start_model_server(
                workdir / f"model-{mid}.log", "--model-id", mid, "--backend", "mock", env=env
            )
        bundle = workdir / "bundle.json"
        write_synthetic_bundle(bundle, IDS)
        config = write_gateway_config(
            workdir / "gateway.yaml", {mid: url for mid, (_, url) in members.items()}, bundle
        )
        gateway = GatewayProcess(config, workdir / "gateway.log", env)
        targets = [
            ("model server", members[IDS[0]][1], "model-server", "/ping", "WMA_MS_TOKEN"),
            ("gateway", gateway.url, "gateway", "/livez", "WMA_GATEWAY_TOKEN"),
        ]
        for name, url, kind, probe, var in targets:
            if token is not None:
                headers = {"Authorization": f"Bearer {env[var]}"}
            start = time.monotonic()
            report = fuzz_openapi(
                url, max_examples=examples, headers=headers, path_parameters={"model_id": IDS[0]}
            )
            took = time.monotonic() - start
            print(f"  {name}: schemathesis {report.summary()} in {took:.1f} s")  # noqa: T201
            failures += [f"{name}: {f}" for f in report.failures]
            start = time.monotonic()
            sent, found = run_hostile(
                url, hostile_cases(kind, model_id=IDS[0]), probe=probe, headers=headers
            )
            took = time.monotonic() - start
            print(  # noqa: T201
                f"  {name}: {sent} hostile requests, {len(found)} failures in {took:.1f} s"
            )
            failures += [f"{name}: {f}" for f in found]
        if gateway.process.poll() is not None:
            failures.append(f"the gateway exited with {gateway.process.returncode}")
        # no request may have reached a traceback or an ERROR line (our bugs) in any log
        for log in sorted(workdir.glob("*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if "Traceback" in line or re.search(r"(^|\s)ERROR[:\s]", line):
                    failures.append(f"{log.name}: {line[:200]}")
    finally:
        if gateway is not None:
            gateway.kill()
        for proc, _ in members.values():
            reap(proc, 10)
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=60, help="per operation and mode")
    args = parser.parse_args()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wma-fuzz-") as tmp:
        for label, token in (("tokens off", None), ("tokens on", "fuzz-token")):
            print(f"{label}:")  # noqa: T201
            workdir = Path(tmp) / label.replace(" ", "-")
            workdir.mkdir()
            failures += [f"{label}: {f}" for f in _run(workdir, args.examples, token)]
    for line in failures:
        print(f"FAIL {line}")  # noqa: T201
    print("fuzz: " + (f"{len(failures)} failures" if failures else "no failures"))  # noqa: T201
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
