"""Render tests: the chart renders, lints and validates, and its wiring holds.

Everything here is offline (Helm v4 SDK, kubernetes-validate schemas).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from chart_render import (
    CHART,
    FULLNAME,
    GPU_VALUES,
    KIND_VALUES,
    NAMESPACE,
    PRODUCTION_VALUES,
    REPO,
    Manifests,
    RenderFn,
)

MODEL_IDS = {
    "9rfa62j1": "topk4",
    "1mjgo9w1": "softmax_b5",
    "dfsesrgu": "topk4",
    "4vtny88m": "topk4",
}
# Custom resources: their schemas are not in kubernetes-validate.
CRD_KINDS = {"HTTPRoute", "ServiceMonitor"}
KUBE_VERSIONS = ("1.27.0", "1.31.0")
# The default and GPU values run the effort backend: they install with a production bundle.
VALUE_SETS = {
    "default": (PRODUCTION_VALUES,),
    "kind": (KIND_VALUES,),
    "gpu": (GPU_VALUES, PRODUCTION_VALUES),
}
EVERYTHING_ON = {
    "canary": {"enabled": True, "weight": 25},
    "httpRoute": {"enabled": True, "parentRefs": [{"name": "public-gw"}]},
    "serviceMonitor": {"enabled": True},
}


def _pods(manifests: Manifests, component: str) -> list[dict[str, Any]]:
    return [d["spec"]["template"] for d in manifests.component("Deployment", component)]


def _model_deployment(manifests: Manifests, model_id: str) -> dict[str, Any]:
    deployment: dict[str, Any] = manifests.get("Deployment", f"{FULLNAME}-model-{model_id}")
    return deployment


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_chart_lints_clean_with_each_value_set(values_of: Callable[..., Any], name: str) -> None:
    for overrides in ({}, EVERYTHING_ON):
        values = values_of(*VALUE_SETS[name], overrides=overrides)
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_validates_against_the_kubernetes_schemas(render: RenderFn, name: str) -> None:
    manifests = render(*VALUE_SETS[name], overrides=EVERYTHING_ON)
    kinds = {o["kind"] for o in manifests.objects}
    assert {"Deployment", "Service", "ConfigMap", "NetworkPolicy", "HTTPRoute"} <= kinds
    for obj in manifests.objects:
        if obj["kind"] in CRD_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} @ {where}: {exc.message}")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_one_deployment_service_and_pdb_per_model(render: RenderFn, name: str) -> None:
    manifests = render(*VALUE_SETS[name])
    deployments = manifests.component("Deployment", "model-server")
    assert len(deployments) == 4
    ids = {d["metadata"]["labels"]["wma.io/model-id"] for d in deployments}
    assert ids == set(MODEL_IDS)
    services = {s["metadata"]["name"] for s in manifests.component("Service", "model-server")}
    # the ClusterIP Service and the headless one the gateway discovers the pods by
    assert services == {f"{FULLNAME}-model-{m}{s}" for m in MODEL_IDS for s in ("", "-pods")}
    for model_id in MODEL_IDS:
        args = _model_deployment(manifests, model_id)["spec"]["template"]["spec"]["containers"][0][
            "args"
        ]
        assert args[args.index("--model-id") + 1] == model_id
    if name != "kind":
        assert len(manifests.component("PodDisruptionBudget", "model-server")) == 4


def test_gpu_values_pin_model_servers_to_gpus(render: RenderFn) -> None:
    manifests = render(
        GPU_VALUES,
        PRODUCTION_VALUES,
        overrides={"modelDefaults": {"gpu": {"resourceName": "nvidia.com/mig-3g.40gb"}}},
    )
    for pod in _pods(manifests, "model-server"):
        spec = pod["spec"]
        container = spec["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/mig-3g.40gb"] == 1
        assert spec["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "tolerations"
        ]
        assert spec["runtimeClassName"] == "nvidia"
        shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory"
        assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
        assert container["args"][container["args"].index("--device") + 1] == "cuda"
    # The gateway never asks for a GPU.
    for pod in _pods(manifests, "gateway"):
        assert "nodeSelector" not in pod["spec"]
        assert not any("nvidia" in k for k in pod["spec"]["containers"][0]["resources"]["limits"])


def test_kind_values_have_no_gpu_resources_tolerations_or_node_selector(render: RenderFn) -> None:
    manifests = render(KIND_VALUES)
    for pod in _pods(manifests, "model-server"):
        spec = pod["spec"]
        container = spec["containers"][0]
        assert not any("nvidia" in k for k in container["resources"].get("limits", {}))
        assert "nodeSelector" not in spec and "tolerations" not in spec
        assert "runtimeClassName" not in spec
        assert container["args"][container["args"].index("--backend") + 1] == "mock"
        assert "--checkpoint" not in container["args"] and "--device" not in container["args"]
        assert container["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}


def test_one_entry_overrides_the_shared_defaults_and_only_itself(render: RenderFn) -> None:
    models = [
        {"id": m, "aggregator": a, "replicas": 3 if m == "dfsesrgu" else 1}
        | ({"gpu": {"enabled": False}, "backend": "mock"} if m == "4vtny88m" else {})
        for m, a in MODEL_IDS.items()
    ]
    manifests = render(PRODUCTION_VALUES, overrides={"models": models})
    assert _model_deployment(manifests, "dfsesrgu")["spec"]["replicas"] == 3
    assert _model_deployment(manifests, "9rfa62j1")["spec"]["replicas"] == 1
    cpu_pod = _model_deployment(manifests, "4vtny88m")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"]["limits"]
    gpu_pod = _model_deployment(manifests, "9rfa62j1")["spec"]["template"]["spec"]
    assert gpu_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_checkpoint_delivery_by_pvc_image_and_object_store(render: RenderFn) -> None:
    models = [
        {"id": "9rfa62j1", "checkpoint": {"source": "pvc", "pvc": {"claimName": "ckpts"}}},
        {"id": "1mjgo9w1", "checkpoint": {"source": "image", "path": "/opt/ckpt/1m.pth"}},
        {
            "id": "dfsesrgu",
            "checkpoint": {
                "source": "objectStore",
                "objectStore": {"url": "https://store.example/dfsesrgu.pth", "sha256": "a" * 64},
            },
        },
    ]
    manifests = render(PRODUCTION_VALUES, overrides={"models": models})

    pvc = _model_deployment(manifests, "9rfa62j1")["spec"]["template"]["spec"]
    assert {
        "name": "checkpoint",
        "persistentVolumeClaim": {"claimName": "ckpts", "readOnly": True},
    } in pvc["volumes"]
    mount = next(m for m in pvc["containers"][0]["volumeMounts"] if m["name"] == "checkpoint")
    assert mount["readOnly"] is True
    assert "/models/9rfa62j1.pth" in pvc["containers"][0]["args"]

    baked = _model_deployment(manifests, "1mjgo9w1")["spec"]["template"]["spec"]
    assert "/opt/ckpt/1m.pth" in baked["containers"][0]["args"]
    assert all(v["name"] != "checkpoint" for v in baked["volumes"])

    fetched = _model_deployment(manifests, "dfsesrgu")["spec"]["template"]["spec"]
    (init,) = fetched["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["CHECKPOINT_URL"] == "https://store.example/dfsesrgu.pth"
    assert env["CHECKPOINT_SHA256"] == "a" * 64
    assert env["CHECKPOINT_DEST"] == "/models/dfsesrgu.pth"
    volume = next(v for v in fetched["volumes"] if v["name"] == "checkpoint")
    assert "emptyDir" in volume
    main_mount = next(
        m for m in fetched["containers"][0]["volumeMounts"] if m["name"] == "checkpoint"
    )
    assert main_mount["readOnly"] is True


def test_gateway_config_discovers_every_model_by_its_headless_service(render: RenderFn) -> None:
    config = render(PRODUCTION_VALUES).gateway_config()
    assert [m["id"] for m in config["models"]] == list(MODEL_IDS)
    for entry in config["models"]:
        assert entry["aggregator"] == MODEL_IDS[entry["id"]]
        headless = f"{FULLNAME}-model-{entry['id']}-pods"
        assert entry["discover"] == f"dns://{headless}.{NAMESPACE}.svc.cluster.local:8000"
        assert entry["protocol"] == "oip" and entry["timeout_s"] == 4
    assert config["calibrators"]["path"] == "calibrators/bundle.json"


def test_configmap_thresholds_equal_the_values(render: RenderFn) -> None:
    thresholds = {"t_low": 0.9967, "t_high": 0.998248}
    config = render(
        PRODUCTION_VALUES, overrides={"gateway": {"config": {"thresholds": thresholds}}}
    ).gateway_config()
    assert config["thresholds"] == thresholds
    # Left unset, the gateway takes the bundle's.
    assert "thresholds" not in render(PRODUCTION_VALUES).gateway_config()


def test_calibrator_sha256_in_the_config_matches_the_bundle_bytes(render: RenderFn) -> None:
    production = render(PRODUCTION_VALUES)
    bundle = production.bundle_bytes()
    assert (
        production.gateway_config()["calibrators"]["sha256"] == hashlib.sha256(bundle).hexdigest()
    )
    assert bundle != (CHART / "files" / "mock.json").read_bytes()
    # With mock model servers only (kind), the chart ships its mock bundle.
    mock = render(KIND_VALUES)
    bundle = mock.bundle_bytes()
    assert mock.gateway_config()["calibrators"]["sha256"] == hashlib.sha256(bundle).hexdigest()
    assert bundle == (CHART / "files" / "mock.json").read_bytes()


def test_shipped_bundle_is_the_local_mock_json_byte_for_byte() -> None:
    source = REPO / "services" / "local" / "wma_local" / "mock.json"
    assert (CHART / "files" / "mock.json").read_bytes() == source.read_bytes()


def test_set_file_bundle_replaces_the_mock_and_pins_its_sha256(render: RenderFn) -> None:
    custom = (
        (REPO / "services" / "local" / "wma_local" / "mock.json")
        .read_bytes()
        .replace(b"2024", b"2025", 1)
    )
    manifests = render(PRODUCTION_VALUES, overrides={"calibrators": {"bundle": custom.decode()}})
    assert manifests.bundle_bytes() == custom
    assert manifests.gateway_config()["calibrators"]["sha256"] == hashlib.sha256(custom).hexdigest()


def test_rendered_config_is_accepted_by_the_gateway_and_its_bundle_loads(
    render: RenderFn, tmp_path: Path
) -> None:
    from wma_core.bundle import load_bundle
    from wma_fusion import config as config_mod

    for files in VALUE_SETS.values():
        manifests = render(*files, overrides=EVERYTHING_ON)
        (tmp_path / "calibrators").mkdir(exist_ok=True)
        (tmp_path / "calibrators" / "bundle.json").write_bytes(manifests.bundle_bytes())
        for track in ("stable", "canary"):
            text = yaml.safe_dump(manifests.gateway_config(track))
            config = config_mod.parse_config(text, base_dir=tmp_path, env={})
            assert [m.id for m in config.models] == list(MODEL_IDS)
            bundle = load_bundle(config.calibrators.path, config.calibrators.sha256)
            for model in config.models:
                assert bundle.models[model.id].aggregator == model.aggregator


def test_network_policy_admits_only_the_gateway_to_the_model_servers(render: RenderFn) -> None:
    manifests = render(PRODUCTION_VALUES)
    policy = manifests.get("NetworkPolicy", f"{FULLNAME}-model-servers")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "model-server"
    for pod in _pods(manifests, "model-server"):
        labels = pod["metadata"]["labels"]
        assert selector.items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    allowed = peer["podSelector"]["matchLabels"]
    for pod in _pods(manifests, "gateway"):
        assert allowed.items() <= pod["metadata"]["labels"].items()
    for pod in _pods(manifests, "model-server"):
        assert not allowed.items() <= pod["metadata"]["labels"].items()
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_httproute_weights_equal_the_values(render: RenderFn) -> None:
    manifests = render(
        PRODUCTION_VALUES, overrides=EVERYTHING_ON | {"canary": {"enabled": True, "weight": 30}}
    )
    (route,) = manifests.of_kind("HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    backends = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert backends == {
        f"{FULLNAME}-gateway": 70,
        f"{FULLNAME}-gateway-canary": 30,
    }
    services = {s["metadata"]["name"] for s in manifests.component("Service", "gateway")}
    assert set(backends) <= services
    # Without a canary the stable track gets everything.
    (route,) = render(
        PRODUCTION_VALUES, overrides={"httpRoute": EVERYTHING_ON["httpRoute"]}
    ).of_kind("HTTPRoute")
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [100]


def test_canary_track_has_its_own_image_and_config_overrides(render: RenderFn) -> None:
    manifests = render(
        PRODUCTION_VALUES,
        overrides={
            "canary": {
                "enabled": True,
                "image": {"tag": "0.2.0"},
                "config": {"fanout": {"deadline_s": 3.0}, "rollout": {"mode": "ensemble"}},
            }
        },
    )
    canary = manifests.get("Deployment", f"{FULLNAME}-gateway-canary")
    stable = manifests.get("Deployment", f"{FULLNAME}-gateway")
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.2.0")
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")
    assert manifests.gateway_config("canary")["fanout"]["deadline_s"] == 3.0
    assert manifests.gateway_config("stable")["fanout"]["deadline_s"] == 4.5
    assert manifests.gateway_config("canary")["fanout"]["connect_retries"] == 1


def test_security_context_invariants_hold_for_every_pod(render: RenderFn) -> None:
    manifests = render(GPU_VALUES, PRODUCTION_VALUES, overrides=EVERYTHING_ON)
    pods = [d["spec"]["template"] for d in manifests.of_kind("Deployment")]
    pods += [{"spec": p["spec"]} for p in manifests.of_kind("Pod")]
    assert len(pods) == 4 + 2 + 1
    for pod in pods:
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"] + spec.get("initContainers", []):
            ctx = container["securityContext"]
            assert ctx["runAsNonRoot"] is True
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    (account,) = manifests.of_kind("ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_every_pod_pulls_with_the_pull_secrets_as_the_release_account(render: RenderFn) -> None:
    """The helm test pod runs the gateway image: a private registry needs the same secrets."""
    secrets = [{"name": "regcred"}]
    manifests = render(PRODUCTION_VALUES, overrides={**EVERYTHING_ON, "imagePullSecrets": secrets})
    pods = [d["spec"]["template"] for d in manifests.of_kind("Deployment")]
    pods += [{"spec": p["spec"]} for p in manifests.of_kind("Pod")]
    assert len(pods) == 4 + 2 + 1
    (account,) = manifests.of_kind("ServiceAccount")
    for pod in pods:
        spec = pod["spec"]
        assert spec["imagePullSecrets"] == secrets
        assert spec["serviceAccountName"] == account["metadata"]["name"]
        assert spec["enableServiceLinks"] is False
    (plain,) = render(PRODUCTION_VALUES).of_kind("Pod")
    assert "imagePullSecrets" not in plain["spec"]


def test_probes_use_the_health_endpoints(render: RenderFn) -> None:
    manifests = render(PRODUCTION_VALUES)
    for pod in _pods(manifests, "model-server"):
        container = pod["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert (
            container["startupProbe"]["failureThreshold"]
            * container["startupProbe"]["periodSeconds"]
            >= 300
        )
    for pod in _pods(manifests, "gateway"):
        container = pod["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_gateway_waits_before_sigterm_and_has_time_to_drain(render: RenderFn) -> None:
    for pod in _pods(render(PRODUCTION_VALUES), "gateway"):
        container = pod["spec"]["containers"][0]
        delay = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert delay > 0
        # preStop + the gateway's drain (deadline 4.5 s + 5 s) fit the grace period.
        assert pod["spec"]["terminationGracePeriodSeconds"] >= delay + 10
    for pod in _pods(
        render(PRODUCTION_VALUES, overrides={"gateway": {"preStopSleepSeconds": 0}}), "gateway"
    ):
        assert "lifecycle" not in pod["spec"]["containers"][0]


def test_otel_env_points_at_the_configured_collector(render: RenderFn) -> None:
    manifests = render(
        PRODUCTION_VALUES, overrides={"otel": {"endpoint": "http://collector.obs:4318"}}
    )
    for deployment in manifests.of_kind("Deployment"):
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.obs:4318"
        assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    for deployment in render(PRODUCTION_VALUES).of_kind("Deployment"):
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["OTEL_TRACES_EXPORTER"] == "none"


def test_service_monitor_scrapes_gateway_and_model_services(render: RenderFn) -> None:
    manifests = render(PRODUCTION_VALUES, overrides={"serviceMonitor": {"enabled": True}})
    (monitor,) = manifests.of_kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    for service in manifests.of_kind("Service"):
        assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    assert render(PRODUCTION_VALUES).of_kind("ServiceMonitor") == []


def _checksum(manifests: Manifests) -> str:
    deployment = manifests.get("Deployment", f"{FULLNAME}-gateway")
    value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/cold-config"]
    return value


def test_hot_reloadable_changes_do_not_roll_the_gateway_but_cold_ones_do(render: RenderFn) -> None:
    base = _checksum(render(PRODUCTION_VALUES))
    hot = {
        "gateway": {
            "config": {"thresholds": {"t_low": 0.5, "t_high": 0.6}, "rollout": {"mode": "ensemble"}}
        }
    }
    assert _checksum(render(PRODUCTION_VALUES, overrides=hot)) == base
    cold = {"gateway": {"config": {"telemetry": {"service_name": "other"}}}}
    assert _checksum(render(PRODUCTION_VALUES, overrides=cold)) != base
    pool = {"gateway": {"config": {"fanout": {"max_connections": 8}}}}
    assert _checksum(render(PRODUCTION_VALUES, overrides=pool)) != base
    exporter = {"gateway": {"config": {"telemetry": {"traces_exporter": "console"}}}}
    assert _checksum(render(PRODUCTION_VALUES, overrides=exporter)) != base
    deadline = {"gateway": {"config": {"fanout": {"deadline_s": 3.0}}}}
    assert _checksum(render(PRODUCTION_VALUES, overrides=deadline)) == base
    slo = {"gateway": {"config": {"telemetry": {"slo_ms": 3000}}}}
    assert _checksum(render(PRODUCTION_VALUES, overrides=slo)) == base

    def reload_off(deadline_s: float) -> dict[str, Any]:
        fanout = {"deadline_s": deadline_s}
        return {"gateway": {"config": {"reload": {"enabled": False}, "fanout": fanout}}}

    with_reload_off = _checksum(render(PRODUCTION_VALUES, overrides=reload_off(2.0)))
    assert with_reload_off != base
    assert _checksum(render(PRODUCTION_VALUES, overrides=reload_off(3.0))) != with_reload_off


def test_hpa_scales_the_stable_gateway(render: RenderFn) -> None:
    manifests = render(PRODUCTION_VALUES)
    (hpa,) = manifests.of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{FULLNAME}-gateway"
    deployment = manifests.get("Deployment", f"{FULLNAME}-gateway")
    assert "replicas" not in deployment["spec"]
    assert render(KIND_VALUES).of_kind("HorizontalPodAutoscaler") == []


def test_helm_test_pod_posts_frames_to_the_stable_gateway(render: RenderFn) -> None:
    manifests = render(PRODUCTION_VALUES)
    (pod,) = manifests.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GATEWAY_URL"] == f"http://{FULLNAME}-gateway.{NAMESPACE}.svc:80"
    assert env["MODELS"] == "4"
    script = container["args"][0]
    compile(script, "helm-test", "exec")
    assert "/v1/analyze" in script


def test_notes_name_the_gateway_and_the_hot_changes(render: RenderFn) -> None:
    notes = next(
        text
        for name, text in render(PRODUCTION_VALUES).templates.items()
        if name.endswith("NOTES.txt")
    )
    assert f"{FULLNAME}-gateway.{NAMESPACE}.svc:80" in notes
    assert "helm test" in notes and "Hot changes" in notes
