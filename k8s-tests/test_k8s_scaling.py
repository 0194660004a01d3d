"""The chart's scale-out: a headless Service per model that the gateway discovers
the pods by, and with ``modelDefaults.autoscaling`` (per-model overridable) one
autoscaler per model server on its own load signal (a KEDA ScaledObject with a
Prometheus trigger, or an HPA on a Pods metric), PodDisruptionBudgets that keep
a replica serving."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest
from chart_render import KIND_VALUES, NAMESPACE, RELEASE, RenderFn

FULLNAME = f"{RELEASE}-wma-ensemble"
MODEL_IDS = ("9rfa62j1", "1mjgo9w1", "dfsesrgu", "4vtny88m")
ON = {"modelDefaults": {"autoscaling": {"enabled": True}}}


def by_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects}


def test_every_model_has_a_headless_service_the_gateway_config_discovers(
    render: RenderFn,
) -> None:
    manifests = render(KIND_VALUES)
    services = by_name(manifests.component("Service", "model-server"))
    config = manifests.gateway_config()
    for entry in config["models"]:
        plain = services[f"{FULLNAME}-model-{entry['id']}"]
        headless = services[f"{FULLNAME}-model-{entry['id']}-pods"]
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["publishNotReadyAddresses"] is False
        assert plain["spec"]["type"] == "ClusterIP" and "clusterIP" not in plain["spec"]
        assert headless["spec"]["selector"] == plain["spec"]["selector"]
        name = f"{headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
        assert entry["discover"] == f"dns://{name}:8000"
        assert "endpoint" not in entry
    assert config["fanout"]["discovery_interval_s"] == 5.0
    domain = render(KIND_VALUES, overrides={"clusterDomain": "corp.internal"}).gateway_config()
    assert domain["models"][0]["discover"].endswith(".svc.corp.internal:8000")


def test_the_service_monitor_scrapes_each_pod_once_not_through_the_headless_service(
    render: RenderFn,
) -> None:
    manifests = render(KIND_VALUES, overrides={"serviceMonitor": {"enabled": True}})
    (monitor,) = manifests.of_kind("ServiceMonitor")
    expressions = monitor["spec"]["selector"]["matchExpressions"]
    assert {"key": "wma.io/discovery", "operator": "DoesNotExist"} in expressions
    headless = [s for s in manifests.of_kind("Service") if s["spec"].get("clusterIP") == "None"]
    assert len(headless) == 4
    assert all(s["metadata"]["labels"]["wma.io/discovery"] == "headless" for s in headless)


def test_autoscaling_is_off_by_default_and_replicas_hold(render: RenderFn) -> None:
    manifests = render(KIND_VALUES)
    assert manifests.of_kind("ScaledObject") == []
    assert manifests.component("HorizontalPodAutoscaler", "model-server") == []
    for deployment in manifests.component("Deployment", "model-server"):
        assert deployment["spec"]["replicas"] == 1


def test_autoscaling_on_gives_one_keda_scaler_per_model_on_its_queue(render: RenderFn) -> None:
    manifests = render(KIND_VALUES, overrides=ON)
    scalers = by_name(manifests.of_kind("ScaledObject"))
    assert set(scalers) == {f"{FULLNAME}-model-{m}" for m in MODEL_IDS}
    for name, scaler in scalers.items():
        spec = scaler["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 8)
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
        query = trigger["metadata"]["query"]
        assert query == f'sum(wma_ms_queue_frames{{namespace="{NAMESPACE}",service="{name}"}})'
        assert trigger["metadata"]["threshold"] == "32"
        assert "cpu" not in str(spec).lower()
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    # the autoscaler owns the replica count
    for deployment in manifests.component("Deployment", "model-server"):
        assert "replicas" not in deployment["spec"]


def test_autoscaling_is_overridable_per_model(render: RenderFn) -> None:
    models = [
        {"id": "9rfa62j1", "autoscaling": {"maxReplicas": 32, "targetValue": 40}},
        {"id": "1mjgo9w1", "autoscaling": {"enabled": False}, "replicas": 3},
        {"id": "dfsesrgu", "autoscaling": {"prometheus": {"query": "sum(rate(x[1m]))"}}},
        {"id": "4vtny88m"},
    ]
    manifests = render(KIND_VALUES, overrides={**ON, "models": models})
    scalers = by_name(manifests.of_kind("ScaledObject"))
    assert f"{FULLNAME}-model-1mjgo9w1" not in scalers and len(scalers) == 3
    first = scalers[f"{FULLNAME}-model-9rfa62j1"]["spec"]
    assert first["maxReplicaCount"] == 32
    assert first["triggers"][0]["metadata"]["threshold"] == "40"
    third = scalers[f"{FULLNAME}-model-dfsesrgu"]["spec"]
    assert third["triggers"][0]["metadata"]["query"] == "sum(rate(x[1m]))"
    fixed = manifests.get("Deployment", f"{FULLNAME}-model-1mjgo9w1")
    assert fixed["spec"]["replicas"] == 3


def test_the_hpa_alternative_scales_on_a_pods_metric(render: RenderFn) -> None:
    overrides = {"modelDefaults": {"autoscaling": {"enabled": True, "kind": "hpa"}}}
    manifests = render(KIND_VALUES, overrides=overrides)
    assert manifests.of_kind("ScaledObject") == []
    hpas = manifests.component("HorizontalPodAutoscaler", "model-server")
    assert len(hpas) == 4
    for hpa in hpas:
        (metric,) = hpa["spec"]["metrics"]
        assert metric["type"] == "Pods"
        assert metric["pods"]["metric"]["name"] == "wma_ms_queue_frames"
        assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "32"}
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_pod_disruption_budgets_keep_a_replica_serving(render: RenderFn) -> None:
    overrides = {"modelDefaults": {"autoscaling": {"enabled": True, "minReplicas": 2}}}
    manifests = render(KIND_VALUES, overrides=overrides)
    pdbs = manifests.component("PodDisruptionBudget", "model-server")
    assert len(pdbs) == 4 and all(p["spec"]["maxUnavailable"] == 1 for p in pdbs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {
                "modelDefaults": {
                    "autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}
                }
            },
            "minReplicas (4) is above maxReplicas (2)",
        ),
        (
            {"modelDefaults": {"replicas": 2, "pdb": {"maxUnavailable": 2}}},
            "lets all 2 replicas go at once",
        ),
        ({"modelDefaults": {"pdb": {"maxUnavailable": 0}}}, "must be at least 1"),
    ],
)
def test_inconsistent_replica_settings_are_refused(
    render: RenderFn, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(KIND_VALUES, overrides=overrides)
