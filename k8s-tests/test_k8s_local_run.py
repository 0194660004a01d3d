"""Chart-driven local run: the rendered manifests (kind values), run as local processes.

Each Deployment's container becomes a local process: the image entrypoint
``wma`` is replaced by this virtualenv's ``wma``, the rendered args and env are
used as they are, and every volume is materialised in a temp dir (ConfigMap
items written as files, emptyDirs as empty dirs) with its mountPath remapped
in args and env. Services are mapped to loopback:

    REWRITE: every Service gets its own free port on 127.0.0.1. The Service's
    cluster DNS URL ``http://<service>.<namespace>.svc:<port>`` is rewritten to
    ``http://127.0.0.1:<free port>`` in the rendered ConfigMaps, and the
    process behind the Service gets ``--host 127.0.0.1 --port <free port>``
    instead of the rendered ``--host 0.0.0.0 --port <containerPort>``. A
    headless Service's (the gateway's ``discover``) name
    ``dns://<service>.<namespace>.svc.cluster.local:<port>`` becomes
    ``dns://127.0.0.1:<free port>`` of the same pod (the name 127.0.0.1
    resolves to itself).

Nothing else is changed, so a wrong endpoint, port, path, bundle or sha256 in
the chart fails here, not only in a cluster. The images' Docker HEALTHCHECK
commands are run against these processes too.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from chart_render import KIND_VALUES, NAMESPACE, REPO
from live_processes import free_port, poll_ok
from wma_core import noisy_or, verdict_for_score
from wma_core.bundle import parse_bundle
from wma_local.samples import grey_frame

pytestmark = pytest.mark.slow

DOCKERFILE_OF = {"model-server": "model-server.Dockerfile", "gateway": "gateway.Dockerfile"}
WMA = Path(sys.executable).with_name("wma")
FRAMES = 6
GREY = 140


class LocalPod:
    """One Deployment's first container, run as a local process."""

    def __init__(
        self,
        deployment: dict[str, Any],
        configmaps: dict[str, dict[str, str]],
        root: Path,
        port: int,
        secrets: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.name: str = deployment["metadata"]["name"]
        self.secrets = secrets or {}  # name -> key -> decoded value (the rendered Secrets)
        spec = deployment["spec"]["template"]["spec"]
        container = spec["containers"][0]
        self.home = root / self.name
        mounts = self._materialise(spec["volumes"], container["volumeMounts"], configmaps)
        argv = [*container["command"], *container["args"]]
        assert argv[0] == "wma", f"{self.name}: the chart must run the wma entrypoint"
        # Remap the rendered args only: the local executable may itself live
        # under a path the pod mounts over (e.g. a checkout in /tmp).
        argv = [str(WMA), *(self._remap(a, mounts) for a in argv[1:])]
        argv[argv.index("--host") + 1] = "127.0.0.1"
        argv[argv.index("--port") + 1] = str(port)
        self.argv = argv
        self.env = self._env(container["env"], mounts)
        self.log = root / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _materialise(
        self,
        volumes: list[dict[str, Any]],
        mounts: list[dict[str, Any]],
        configmaps: dict[str, dict[str, str]],
    ) -> dict[str, Path]:
        by_name = {v["name"]: v for v in volumes}
        remap: dict[str, Path] = {}
        for mount in mounts:
            volume = by_name[mount["name"]]
            local = self.home / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            sources = list(volume.get("projected", {}).get("sources", []))
            if "configMap" in volume:
                sources.append({"configMap": volume["configMap"]})
            for source in sources:
                ref = source["configMap"]
                data = configmaps[ref["name"]]
                for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
                    target = local / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(data[item["key"]])
            assert sources or "emptyDir" in volume, f"{self.name}: unsupported volume {volume}"
            remap[mount["mountPath"]] = local
        return remap

    @staticmethod
    def _remap(value: str, mounts: dict[str, Path]) -> str:
        for mount_path in sorted(mounts, key=len, reverse=True):
            if value == mount_path or value.startswith(mount_path + "/"):
                return str(mounts[mount_path]) + value[len(mount_path) :]
        return value

    def _env(self, entries: list[dict[str, Any]], mounts: dict[str, Path]) -> dict[str, str]:
        env = {"PATH": os.environ["PATH"]}
        for entry in entries:
            if "value" in entry:
                value = str(entry["value"])
            elif "secretKeyRef" in entry["valueFrom"]:
                ref = entry["valueFrom"]["secretKeyRef"]
                value = self.secrets[ref["name"]][ref["key"]]
            else:
                field_path = entry["valueFrom"]["fieldRef"]["fieldPath"]
                assert field_path == "metadata.name", field_path
                value = f"{self.name}-local"
            # The kubelet expands $(VAR) from earlier entries.
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)
            env[entry["name"]] = self._remap(value, mounts)
        return env

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def _wait_ok(pod: LocalPod, url: str, timeout_s: float = 60.0) -> None:
    def still_running() -> None:
        assert pod.proc is not None
        if pod.proc.poll() is not None:
            pytest.fail(f"{pod.name} exited with {pod.proc.returncode}:\n{pod.logs()}")

    last = poll_ok(url, timeout_s, interval=0.2, request_timeout=2.0, before_each=still_running)
    if last is not None:
        pytest.fail(f"{pod.name} not ready at {url} after {timeout_s}s ({last}):\n{pod.logs()}")


@pytest.fixture(scope="module")
def local_release(
    render: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    with _release(render, tmp_path_factory.mktemp("chart-local-run")) as release:
        yield release


@contextmanager
def _release(
    render: Callable[..., Any], tmp_path: Path, overrides: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    manifests = render(KIND_VALUES, overrides=overrides)
    secrets = {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for s in manifests.of_kind("Secret")
    }
    # REWRITE (see the module docstring): Service DNS URL -> 127.0.0.1:<free port>.
    service_ports: dict[str, int] = {}
    rewrites: dict[str, str] = {}
    services = [s for s in manifests.of_kind("Service") if s["spec"].get("clusterIP") != "None"]
    for service in services:
        name = service["metadata"]["name"]
        port = free_port()
        service_ports[name] = port
        for service_port in service["spec"]["ports"]:
            url = f"http://{name}.{NAMESPACE}.svc:{service_port['port']}"
            rewrites[url] = f"http://127.0.0.1:{port}"
    for headless in manifests.of_kind("Service"):
        if headless["spec"].get("clusterIP") != "None":
            continue
        (service,) = [s for s in services if s["spec"]["selector"] == headless["spec"]["selector"]]
        port = service_ports[service["metadata"]["name"]]
        for service_port in headless["spec"]["ports"]:
            name = f"{headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
            rewrites[f"dns://{name}:{service_port['port']}"] = f"dns://127.0.0.1:{port}"
    configmaps: dict[str, dict[str, str]] = {}
    for cm in manifests.of_kind("ConfigMap"):
        data = dict(cm["data"])
        for key, text in data.items():
            for url, local in rewrites.items():
                text = text.replace(url, local)
            data[key] = text
        configmaps[cm["metadata"]["name"]] = data

    pods: dict[str, LocalPod] = {}
    for deployment in manifests.of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (service,) = [s for s in services if s["spec"]["selector"].items() <= labels.items()]
        pods[deployment["metadata"]["name"]] = LocalPod(
            deployment, configmaps, tmp_path, service_ports[service["metadata"]["name"]], secrets
        )
    models = [p for p in pods.values() if "model-server" in p.argv]
    gateways = [p for p in pods.values() if "gateway" in p.argv]
    assert len(models) == 4 and len(gateways) == 1
    try:
        for pod in models:
            pod.start()
        for pod in models:
            port = pod.argv[pod.argv.index("--port") + 1]
            _wait_ok(pod, f"http://127.0.0.1:{port}/v2/health/ready")
        (gateway,) = gateways
        gateway.start()
        gateway_port = gateway.argv[gateway.argv.index("--port") + 1]
        _wait_ok(gateway, f"http://127.0.0.1:{gateway_port}/readyz")
        yield {
            "manifests": manifests,
            "gateway_url": f"http://127.0.0.1:{gateway_port}",
            "pods": pods,
        }
    finally:
        for pod in pods.values():
            pod.stop()


def test_rendered_release_answers_an_analyze_request_end_to_end(
    local_release: dict[str, Any],
) -> None:
    manifests = local_release["manifests"]
    files = [
        ("files", (f"f{i}.png", grey_frame(GREY, size=48), "image/png")) for i in range(FRAMES)
    ]
    response = httpx.post(
        local_release["gateway_url"] + "/v1/analyze",
        data={"participant_id": "chart-local-run"},
        files=files,
        timeout=30.0,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] in {"REAL", "UNCERTAIN", "FAKE"}
    assert body["num_frames"] == FRAMES
    assert body["degraded"] is False
    expected_ids = [m["id"] for m in manifests.gateway_config()["models"]]
    assert sorted(body["models"]) == sorted(expected_ids)
    # The gateway loaded exactly the bundle the chart shipped and pinned ...
    bundle = parse_bundle(manifests.bundle_bytes())
    assert body["calibrators_sha256"] == manifests.gateway_config()["calibrators"]["sha256"]
    assert body["calibrators_sha256"] == bundle.sha256
    assert body["thresholds"] == {
        "t_low": bundle.thresholds.t_low,
        "t_high": bundle.thresholds.t_high,
        "source": "bundle",
    }
    # ... and calibrated each member's score with that bundle's curve.
    calibrated = []
    for model_id, member in body["models"].items():
        assert member["status"] == "ok", (model_id, member)
        assert member["frames_scored"] == FRAMES
        assert member["aggregator"] == bundle.models[model_id].aggregator
        # The mock backend of the kind values scores a uniform frame as grey / 255.
        assert member["aggregated"] == pytest.approx(GREY / 255, abs=1e-6)
        expected = bundle.models[model_id].curve(member["aggregated"])
        assert member["calibrated"] == pytest.approx(expected, abs=1e-9)
        calibrated.append(expected)
    fused = noisy_or(calibrated)
    assert body["fusion_score"] == pytest.approx(fused, abs=1e-9)
    assert body["verdict"] == verdict_for_score(fused, bundle.thresholds).value


def test_rendered_model_servers_answer_the_legacy_api(local_release: dict[str, Any]) -> None:
    """The legacy client's exact call, against each chart-rendered model server."""
    for pod in local_release["pods"].values():
        if "model-server" not in pod.argv:
            continue
        port = pod.argv[pod.argv.index("--port") + 1]
        response = httpx.post(
            f"http://127.0.0.1:{port}/check_frame_batch",
            params={
                "model_type": "custom",
                "threshold": 0.75,
                "debug": "false",
                "yolo_conf_threshold": 0.8,
            },
            files=[("files", ("a.png", grey_frame(GREY, size=48), "image/png"))],
            timeout=10.0,
        )
        assert response.status_code == 200, response.text
        assert response.json()["probs"] == pytest.approx([GREY / 255], abs=1e-6)


def test_rendered_release_with_tokens_serves_only_callers_with_the_token(
    render: Callable[..., Any], tmp_path: Path
) -> None:
    # auth.* as values: the chart's Secret, read by secretKeyRef into every pod's env
    overrides = {
        "auth": {
            "gateway": {"enabled": True, "token": "chart-gateway-token"},
            "members": {"enabled": True, "token": "chart-members-token"},
        }
    }
    files = [("files", ("f.png", grey_frame(GREY, size=48), "image/png"))]
    with _release(render, tmp_path, overrides) as release:
        url = release["gateway_url"] + "/v1/analyze"
        refused = httpx.post(url, data={"participant_id": "p"}, files=files, timeout=30.0)
        assert refused.status_code == 401, refused.text
        auth = {"Authorization": "Bearer chart-gateway-token"}
        r = httpx.post(url, headers=auth, data={"participant_id": "p"}, files=files, timeout=30)
        assert r.status_code == 200, r.text
        assert {m["status"] for m in r.json()["models"].values()} == {"ok"}  # members: token
        member = next(p for p in release["pods"].values() if "model-server" in p.argv)
        port = member.argv[member.argv.index("--port") + 1]
        assert httpx.get(f"http://127.0.0.1:{port}/v2").status_code == 401


def _healthcheck_argv(dockerfile: Path) -> list[str]:
    """The exec-form CMD of the Dockerfile's HEALTHCHECK, continuation lines joined."""
    text = dockerfile.read_text().replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.lstrip().startswith("HEALTHCHECK ")]
    argv: list[str] = json.loads(line.split(" CMD ", 1)[1])
    return argv


def test_image_healthchecks_pass_against_the_servers_and_fail_without_one(
    local_release: dict[str, Any],
) -> None:
    """Each image's HEALTHCHECK, as written, against the process that image runs.

    ``python`` is the image venv's interpreter (PATH=/opt/venv/bin:...); here it is
    this virtualenv's. The port comes from WMA_HEALTH_PORT, as the image's ENV sets it.
    """
    probes = []
    for pod in local_release["pods"].values():
        (command,) = [c for c in DOCKERFILE_OF if c in pod.argv]
        argv = _healthcheck_argv(REPO / "docker" / DOCKERFILE_OF[command])
        assert argv[0] == "python", argv
        probe = [sys.executable, *argv[1:]]
        port = pod.argv[pod.argv.index("--port") + 1]
        result = subprocess.run(
            probe, env={"WMA_HEALTH_PORT": port}, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, (pod.name, result.stderr[-800:])
        probes.append(probe)
    assert len(probes) == 5
    for probe in probes:  # nothing listening: the check must fail, not pass vacuously
        result = subprocess.run(
            probe,
            env={"WMA_HEALTH_PORT": str(free_port())},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode != 0
