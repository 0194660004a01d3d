"""Cluster tests: install the chart (kind values) into the current kubeconfig's cluster.

Run by ``k8s-tests/kind-e2e.sh`` after it built and loaded the images
(``wma-model-server:dev``, ``wma-gateway:dev``). Skipped, with the reason,
when no cluster is reachable. The release goes into a fresh namespace that is
deleted afterwards.

Environment:
    WMA_E2E_GATEWAY_URL  how this machine reaches the gateway Service
                         (default http://127.0.0.1:30080: the NodePort of the
                         kind values, mapped to the host by kind-config.yaml)
    WMA_E2E_TIMEOUT_S    install / rollout timeout (default 600)
    WMA_E2E_REQUIRE_CLUSTER=1  fail instead of skipping when no cluster is
                         reachable (kind-e2e.sh sets it)
"""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image

pytestmark = pytest.mark.cluster

helm = pytest.importorskip("helm_python")
k8s_client = pytest.importorskip("kubernetes.client")
k8s_config = pytest.importorskip("kubernetes.config")

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "wma-ensemble"
KIND_VALUES = REPO / "ci" / "kind-values.yaml"
RELEASE = "wma-e2e"
TIMEOUT_S = int(os.environ.get("WMA_E2E_TIMEOUT_S", "600"))
GATEWAY_URL = os.environ.get("WMA_E2E_GATEWAY_URL", "http://127.0.0.1:30080")


def _png(grey: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (grey, grey, grey)).save(buf, format="PNG")
    return buf.getvalue()


def _no_cluster(reason: str) -> None:
    if os.environ.get("WMA_E2E_REQUIRE_CLUSTER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster() -> Any:
    try:
        k8s_config.load_kube_config()
    except Exception as exc:  # no kubeconfig, no current context, ...
        _no_cluster(f"no Kubernetes cluster configured (kubeconfig: {exc})")
    api = k8s_client.CoreV1Api()
    try:
        api.list_namespace(limit=1, _request_timeout=5)
    except Exception as exc:
        _no_cluster(f"the cluster of the current kubeconfig is not reachable: {exc}")
    return api


@pytest.fixture(scope="module")
def release(cluster: Any) -> Iterator[dict[str, Any]]:
    namespace = f"wma-e2e-{uuid.uuid4().hex[:6]}"
    values = yaml.safe_load(KIND_VALUES.read_text())
    with helm.Config(namespace=namespace) as cfg:
        try:
            cfg.install(
                str(CHART),
                RELEASE,
                values,
                namespace=namespace,
                create_namespace=True,
                wait="watcher",
                timeout=TIMEOUT_S,
            )
            yield {"cfg": cfg, "namespace": namespace, "values": values}
        finally:
            cfg.uninstall(RELEASE, ignore_not_found=True, wait="watcher", timeout=TIMEOUT_S)
            cluster.delete_namespace(namespace)


def _wait_rolled_out(namespace: str) -> list[Any]:
    apps = k8s_client.AppsV1Api()
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        deployments = apps.list_namespaced_deployment(
            namespace, label_selector=f"app.kubernetes.io/instance={RELEASE}"
        ).items
        pending = [
            d.metadata.name
            for d in deployments
            if (d.status.updated_replicas or 0) < d.spec.replicas
            or (d.status.available_replicas or 0) < d.spec.replicas
            or d.status.observed_generation < d.metadata.generation
        ]
        if deployments and not pending:
            return list(deployments)
        assert time.monotonic() < deadline, f"not rolled out after {TIMEOUT_S}s: {pending}"
        time.sleep(2)


def test_release_rolls_out_four_model_servers_and_a_gateway(release: dict[str, Any]) -> None:
    deployments = _wait_rolled_out(release["namespace"])
    components = sorted(d.metadata.labels["app.kubernetes.io/component"] for d in deployments)
    assert components == ["gateway"] + ["model-server"] * 4


def test_helm_test_pod_gets_a_verdict_from_the_gateway(release: dict[str, Any]) -> None:
    _wait_rolled_out(release["namespace"])
    result = release["cfg"].test(RELEASE, timeout=300, logs=True)
    assert "ok:" in result.get("logs", ""), result


def test_a_27_frame_batch_gets_a_verdict_with_every_model_ok(release: dict[str, Any]) -> None:
    _wait_rolled_out(release["namespace"])
    files = [("files", (f"f{i}.png", _png(60 + 6 * i), "image/png")) for i in range(27)]
    response = httpx.post(
        f"{GATEWAY_URL}/v1/analyze", data={"participant_id": "e2e"}, files=files, timeout=30.0
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["num_frames"] == 27
    assert body["verdict"] in {"REAL", "UNCERTAIN", "FAKE"}
    assert {m: s["status"] for m, s in body["models"].items()} == {
        m["id"]: "ok" for m in yaml.safe_load((CHART / "values.yaml").read_text())["models"]
    }


def test_canary_weight_change_reaches_the_httproute(release: dict[str, Any]) -> None:
    extensions = k8s_client.ApiextensionsV1Api()
    try:
        extensions.read_custom_resource_definition("httproutes.gateway.networking.k8s.io")
    except k8s_client.ApiException as exc:
        if exc.status == 404:
            pytest.skip("Gateway API CRDs are not installed (kind-e2e.sh installs them)")
        raise
    namespace = release["namespace"]
    custom = k8s_client.CustomObjectsApi()
    for weight in (10, 40):
        values = release["values"] | {
            "canary": {**release["values"].get("canary", {}), "enabled": True, "weight": weight},
            "httpRoute": {"enabled": True, "parentRefs": [{"name": "wma-e2e-gw"}]},
        }
        release["cfg"].upgrade(
            str(CHART), RELEASE, values, namespace=namespace, wait="watcher", timeout=TIMEOUT_S
        )
        route = custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", "wma-e2e-wma-ensemble"
        )
        weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
        assert weights == {
            "wma-e2e-wma-ensemble-gateway": 100 - weight,
            "wma-e2e-wma-ensemble-gateway-canary": weight,
        }
    _wait_rolled_out(namespace)
