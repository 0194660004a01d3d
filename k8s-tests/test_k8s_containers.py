"""``make e2e``: the chart's release (kind values) in real containers of the real images.

Builds ``wma-model-server:dev`` and ``wma-gateway:dev`` offline from the
wheelhouses (``scripts/wheelhouse.sh``) on ``$WMA_E2E_BASE_IMAGE``, renders the
chart with the Helm library, runs every rendered Deployment as a container on
one Docker network (see ``tests_support/containers.py`` for what is taken from
the manifests), then: the chart's own helm-test Pod, a 27-frame analyze
compared with the local stack (``wma up``) on the same frames, a killed model
server (degraded answer naming it) and its restart (complete answers again), and
one model run as two replica containers behind one DNS name (the headless
Service's): the gateway discovers both, both serve (their own request counters),
and with one of them killed every answer stays complete.
Everything it started is removed at the end; the two images stay.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from chart_render import CHART, KIND_VALUES, REPO, RenderFn
from containers import Release, build_image, wait_until
from live_processes import free_port, poll_ok

# Image builds take minutes on a small machine: well past the unit default.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

IMAGES = {
    "wma-model-server:dev": REPO / "docker" / "model-server.Dockerfile",
    "wma-gateway:dev": REPO / "docker" / "gateway.Dockerfile",
}
FRAMES_DIR = REPO / "services" / "local" / "wma_local" / "demo_frames" / "carol-fake"
FRAMES = 27
REPORT = REPO / "build" / "e2e" / "report.json"
WMA = Path(sys.executable).with_name("wma")
# The model run as two replica containers behind its headless Service's name.
REPLICATED = "4vtny88m"


def two_replicas_of(model_id: str) -> list[dict[str, Any]]:
    """The chart's models, ``model_id`` with ``replicas: 2``."""
    models: list[dict[str, Any]] = yaml.safe_load((CHART / "values.yaml").read_text())["models"]
    return [{**m, "replicas": 2} if m["id"] == model_id else m for m in models]


def frames() -> list[tuple[str, tuple[str, bytes, str]]]:
    jpegs = sorted(FRAMES_DIR.glob("*.jpg"))
    return [
        ("files", (f"f{i:02d}.jpg", jpegs[i % len(jpegs)].read_bytes(), "image/jpeg"))
        for i in range(FRAMES)
    ]


def analyze(base_url: str, participant: str = "e2e") -> httpx.Response:
    return httpx.post(
        base_url + "/v1/analyze",
        data={"participant_id": participant},
        files=frames(),
        timeout=30.0,
    )


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    figures: dict[str, Any] = {}
    yield figures
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(figures, indent=2) + "\n")


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    docker = pytest.importorskip("docker")  # a dev dependency; make install brings it
    client = docker.from_env(timeout=600)
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="module")
def images(engine: Any, report: dict[str, Any]) -> dict[str, Any]:
    base = os.environ.get("WMA_E2E_BASE_IMAGE", "wma-base:bookworm")
    built = {}
    for tag, dockerfile in IMAGES.items():
        start = time.monotonic()
        image, _ = build_image(engine, dockerfile, tag, {"PYTHON_IMAGE": base})
        built[tag] = image
        report.setdefault("images", {})[tag] = {
            "size_mb": round(image.attrs["Size"] / 1e6, 1),
            "build_s": round(time.monotonic() - start, 1),
            "base": base,
        }
    return built


@pytest.fixture(scope="module")
def release(
    engine: Any, images: dict[str, Any], render: RenderFn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    manifests = render(KIND_VALUES, overrides={"models": two_replicas_of(REPLICATED)})
    root = tmp_path_factory.mktemp("release")
    root.chmod(0o755)
    rel = Release(engine, manifests, root, prefix=f"wma-e2e-{os.getpid()}")
    rel.remove()
    try:
        rel.start_network()
        deployments = [w for w in rel.workloads.values() if w.kind == "Deployment"]
        for workload in deployments:
            rel.run(workload.name)
        gateway = next(w.name for w in deployments if "gateway" in w.main["args"])
        for workload in deployments:
            port = workload.main["ports"][0]["containerPort"]
            ready = "/readyz" if workload.name == gateway else "/v2/health/ready"
            last = poll_ok(f"http://{rel.ip_of(workload.name)}:{port}{ready}", 90.0, 0.5, 2.0)
            if last is not None:
                pytest.fail(f"{workload.name} not ready ({last}):\n" + "\n".join(rel.logs()))
        yield rel
    finally:
        rel.remove()


def gateway_url(release: Release) -> str:
    (name,) = [
        w.name
        for w in release.workloads.values()
        if w.kind == "Deployment" and "gateway" in w.main["args"]
    ]
    port = release.workloads[name].main["ports"][0]["containerPort"]
    return f"http://{release.ip_of(name)}:{port}"


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    logs = tmp_path_factory.mktemp("stack")
    with (logs / "up.log").open("wb") as err:
        proc = subprocess.Popen(
            [str(WMA), "up", "--port", str(port), "--log-dir", str(logs)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        last = poll_ok(f"http://127.0.0.1:{port}/readyz", 60.0, 0.2, 2.0)
        assert last is None, (last, (logs / "up.log").read_text()[-2000:])
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_containers_run_as_non_root_with_a_read_only_root_and_no_capabilities(
    release: Release,
) -> None:
    for workload in release.workloads.values():
        if workload.container is None:
            continue
        workload.container.reload()
        host = workload.container.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True, workload.name
        assert host["CapDrop"] == ["ALL"], workload.name
        assert "no-new-privileges" in host["SecurityOpt"], workload.name
        uid = workload.container.exec_run(["python", "-c", "import os; print(os.getuid())"])
        assert uid.output.decode().strip() == "10001", (workload.name, uid.output)
        write = workload.container.exec_run(["python", "-c", "open('/opt/venv/x', 'w')"])
        assert write.exit_code != 0 and b"Read-only file system" in write.output, workload.name
        installer = workload.container.exec_run(["python", "-m", "pip", "--version"])
        assert installer.exit_code != 0, f"{workload.name}: pip in the image"


def test_the_charts_helm_test_pod_passes_against_the_containers(release: Release) -> None:
    (pod,) = [w.name for w in release.workloads.values() if w.kind == "Pod"]
    release.run(pod)
    code, logs = release.wait_exit(pod, timeout_s=120)
    assert code == 0, logs
    assert "ok:" in logs


def test_27_frames_get_the_local_stacks_verdict_from_the_containers(
    release: Release, local_stack: str, report: dict[str, Any]
) -> None:
    served = analyze(gateway_url(release))
    local = analyze(local_stack)
    assert served.status_code == 200 == local.status_code, (served.text, local.text)
    got, want = served.json(), local.json()
    assert got["num_frames"] == FRAMES and got["degraded"] is False
    for key in ("verdict", "banner", "confidence", "calibrators_sha256", "thresholds"):
        assert got[key] == want[key], key
    assert got["fusion_score"] == pytest.approx(want["fusion_score"], abs=1e-12)
    assert got["models"].keys() == want["models"].keys()
    for model_id, member in got["models"].items():
        assert member["status"] == "ok"
        for key in ("aggregated", "calibrated"):
            assert member[key] == pytest.approx(want["models"][model_id][key], abs=1e-12)
    report["analyze_27"] = {
        "verdict": got["verdict"],
        "banner": got["banner"],
        "fusion_score": got["fusion_score"],
        "latency_ms": got["latency_ms"],
    }


def test_a_killed_model_server_degrades_the_answer_and_its_restart_restores_it(
    release: Release, report: dict[str, Any]
) -> None:
    url = gateway_url(release)
    victim = next(
        w
        for w in release.workloads.values()
        if w.kind == "Deployment" and "model-server" in w.main["args"]
    )
    model_id = victim.main["args"][victim.main["args"].index("--model-id") + 1]
    victim.container.kill()
    degraded = analyze(url)
    assert degraded.status_code == 200, degraded.text
    body = degraded.json()
    assert body["degraded"] is True
    assert body["models"][model_id]["status"] != "ok"
    assert all(m["status"] == "ok" for k, m in body["models"].items() if k != model_id)
    assert body["verdict"] in {"REAL", "UNCERTAIN", "FAKE"}

    victim.container.start()  # same container, same network aliases: a pod restart
    port = victim.main["ports"][0]["containerPort"]
    ready_in = wait_until(
        lambda: (
            poll_ok(f"http://{release.ip_of(victim.name)}:{port}/v2/health/ready", 0.5, 0.1, 1.0)
            is None
        ),
        60.0,
    )
    complete_in = wait_until(lambda: analyze(url).json().get("degraded") is False, 60.0, 0.5)
    report["member_restart"] = {
        "model": model_id,
        "ready_s": round(ready_in, 2),
        "complete_after_ready_s": round(complete_in, 2),
    }


def infer_served(url: str) -> float:
    """Infer calls a model server answered 200 (its own ``wma_ms_requests_total``)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("wma_ms_requests_total{") and "infer" in line and 'status="200"' in line
    )


def test_two_replicas_behind_one_dns_name_are_discovered_and_both_serve(
    release: Release, report: dict[str, Any]
) -> None:
    url = gateway_url(release)
    replicas = [
        w
        for w in release.workloads.values()
        if w.kind == "Deployment"
        and "model-server" in w.main["args"]
        and w.main["args"][w.main["args"].index("--model-id") + 1] == REPLICATED
    ]
    assert len(replicas) == 2
    assert set(replicas[0].aliases) == set(replicas[1].aliases)  # one name, two addresses
    port = replicas[0].main["ports"][0]["containerPort"]
    addresses = {f"{release.ip_of(w.name)}:{port}" for w in replicas}

    def discovered() -> set[str]:
        models = httpx.get(f"{url}/readyz", timeout=5).json()["models"]
        return set(models[REPLICATED]["replicas"])

    wait_until(lambda: discovered() == addresses, 30.0, 0.5)
    before = {w.name: infer_served(f"http://{release.ip_of(w.name)}:{port}") for w in replicas}
    for i in range(12):
        response = analyze(url, participant=f"replicas-{i}")
        assert response.status_code == 200 and response.json()["degraded"] is False
    after = {w.name: infer_served(f"http://{release.ip_of(w.name)}:{port}") for w in replicas}
    assert all(after[n] > before[n] for n in before), (before, after)

    replicas[1].container.kill()  # one replica of the model down: answers stay complete
    complete = [analyze(url, participant="one-down").json() for _ in range(4)]
    assert all(a["degraded"] is False for a in complete), complete
    assert all(a["models"][REPLICATED]["status"] == "ok" for a in complete)
    replicas[1].container.start()
    report["replicas"] = {
        "model": REPLICATED,
        "discovered": sorted(addresses),
        "infer_calls_served": {n: after[n] - before[n] for n in before},
        "complete_with_one_down": len(complete),
    }
