"""The gateway's NetworkPolicy: in only from the listed peers, out only where the gateway calls.

Read from the rendered policy and checked against the rendered pods' labels and
ports, so a selector or port that drifts from the workloads fails here.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from chart_render import (
    FULLNAME,
    KIND_VALUES,
    NAMESPACE,
    PRODUCTION_VALUES,
    RELEASE,
    Manifests,
    RenderFn,
    load_values,
)

POLICY = f"{FULLNAME}-gateway"
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


def _policy(manifests: Manifests) -> dict[str, Any]:
    spec: dict[str, Any] = manifests.get("NetworkPolicy", POLICY)["spec"]
    return spec


def _selects(selector: dict[str, Any], obj: dict[str, Any]) -> bool:
    labels = obj["metadata"]["labels"]
    return bool(selector["matchLabels"].items() <= labels.items())


def _pods(manifests: Manifests, component: str) -> list[dict[str, Any]]:
    return [d["spec"]["template"] for d in manifests.component("Deployment", component)]


def _ports(rule: dict[str, Any]) -> list[tuple[str, int]]:
    return [(p["protocol"], p["port"]) for p in rule["ports"]]


def _egress_to(spec: dict[str, Any], port: int) -> list[dict[str, Any]]:
    return [r for r in spec["egress"] if ("TCP", port) in _ports(r)]


def test_policy_selects_every_gateway_track_and_nothing_else(render: RenderFn) -> None:
    manifests = render(PRODUCTION_VALUES, overrides={"canary": {"enabled": True}})
    spec = _policy(manifests)
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    gateways = _pods(manifests, "gateway")
    assert len(gateways) == 2 and all(_selects(spec["podSelector"], p) for p in gateways)
    assert not any(_selects(spec["podSelector"], p) for p in _pods(manifests, "model-server"))


def test_default_ingress_is_the_release_namespace_the_helm_test_pod_and_monitoring(
    render: RenderFn,
) -> None:
    manifests = render(PRODUCTION_VALUES)
    spec = _policy(manifests)
    (container,) = _pods(manifests, "gateway")[0]["spec"]["containers"]
    http = container["ports"][0]["containerPort"]
    api, metrics = spec["ingress"]
    assert _ports(api) == [("TCP", http)] and _ports(metrics) == [("TCP", http)]
    test_pod_peer, namespace_peer = api["from"]
    (test_pod,) = manifests.of_kind("Pod")
    assert _selects(test_pod_peer["podSelector"], test_pod)
    assert not any(
        _selects(test_pod_peer["podSelector"], p) for p in _pods(manifests, "model-server")
    )
    assert namespace_peer == {"podSelector": {}}  # every pod of the policy's own namespace
    assert metrics["from"] == [MONITORING]


def test_ingress_is_exactly_the_peers_the_operator_lists(render: RenderFn) -> None:
    meeting = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "meeting"}}}
    values = {"networkPolicy": {"gateway": {"ingressFrom": [meeting], "metricsFrom": []}}}
    (api,) = _policy(render(PRODUCTION_VALUES, overrides=values))["ingress"]
    assert api["from"][1:] == [meeting]
    assert len(api["from"]) == 2  # the helm test pod, then the listed peer


def test_default_egress_is_dns_and_the_model_servers_only(render: RenderFn) -> None:
    models = [{"id": "9rfa62j1"}, {"id": "1mjgo9w1", "port": 9000}]
    models += [{"id": "dfsesrgu"}, {"id": "4vtny88m"}]
    manifests = render(PRODUCTION_VALUES, overrides={"models": models})
    dns, model_servers = _policy(manifests)["egress"]
    assert _ports(dns) == [("UDP", 53), ("TCP", 53)]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    (peer,) = model_servers["to"]
    servers = _pods(manifests, "model-server")
    assert len(servers) == 4 and all(_selects(peer["podSelector"], p) for p in servers)
    assert not any(_selects(peer["podSelector"], p) for p in _pods(manifests, "gateway"))
    served = {c["ports"][0]["containerPort"] for p in servers for c in p["spec"]["containers"]}
    assert {port for _, port in _ports(model_servers)} == served == {8000, 9000}


@pytest.mark.parametrize(
    ("endpoint", "port", "peer"),
    [
        (
            "http://otel-collector.observability.svc:4318",
            4318,
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "observability"}
                }
            },
        ),
        (
            "http://collector.obs.svc.cluster.local:4318",
            4318,
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}}},
        ),
        (
            "http://collector:4318",
            4318,
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}},
        ),
        ("http://10.1.2.3:4318", 4318, {"ipBlock": {"cidr": "10.1.2.3/32"}}),
    ],
)
def test_tracing_opens_egress_to_the_collector_only(
    render: RenderFn, endpoint: str, port: int, peer: dict[str, Any]
) -> None:
    manifests = render(PRODUCTION_VALUES, overrides={"otel": {"endpoint": endpoint}})
    spec = _policy(manifests)
    (rule,) = _egress_to(spec, port)
    assert rule == {"to": [peer], "ports": [{"protocol": "TCP", "port": port}]}
    assert len(spec["egress"]) == 3
    kubernetes_validate.validate(manifests.get("NetworkPolicy", POLICY), "1.31.0", strict=True)
    assert not _egress_to(_policy(render(PRODUCTION_VALUES)), port)


def test_a_collector_outside_the_cluster_needs_its_peers_listed(
    chart: Any, render: RenderFn
) -> None:
    external = {"otel": {"endpoint": "https://otlp.vendor.example.com"}}
    with pytest.raises(helm.HelmRenderError) as caught:
        chart.render(
            values=load_values(PRODUCTION_VALUES, overrides=external),
            name=RELEASE,
            namespace=NAMESPACE,
        )
    assert "networkPolicy.gateway.otlpTo:" in str(caught.value)
    assert "https://otlp.vendor.example.com" in str(caught.value)
    listed = [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    values = external | {"networkPolicy": {"gateway": {"otlpTo": listed}}}
    (rule,) = _egress_to(_policy(render(PRODUCTION_VALUES, overrides=values)), 443)
    assert rule["to"] == listed


def test_a_legacy_path_opens_egress_to_the_legacy_server(render: RenderFn) -> None:
    rollout = {"mode": "shadow", "legacy": {"endpoint": "http://legacy.old-api.svc:8999"}}
    values = {"canary": {"enabled": True, "config": {"rollout": rollout}}}
    spec = _policy(render(PRODUCTION_VALUES, overrides=values))
    (rule,) = _egress_to(spec, 8999)
    assert rule["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "old-api"}}}
    ]
    assert not _egress_to(_policy(render(PRODUCTION_VALUES)), 8999)


def test_kind_values_let_the_nodeport_traffic_reach_the_gateway(render: RenderFn) -> None:
    manifests = render(KIND_VALUES)
    (api, _metrics) = _policy(manifests)["ingress"]
    assert {"ipBlock": {"cidr": "0.0.0.0/0"}} in api["from"]
    assert manifests.get("Service", f"{FULLNAME}-gateway")["spec"]["type"] == "NodePort"


def test_no_policy_when_network_policies_are_disabled(render: RenderFn) -> None:
    manifests = render(PRODUCTION_VALUES, overrides={"networkPolicy": {"enabled": False}})
    assert manifests.of_kind("NetworkPolicy") == []
