"""The operator's view: the Grafana dashboard ConfigMap and the PrometheusRule render
behind their switches, and every metric they name is one the services export.

The exported names come from the real ``/metrics`` of a running gateway (real
uvicorn on a thread) and a running mock model server process, after traffic
that makes the labelled series exist: answers, a replica that refuses
connections (a retry, an open breaker), batches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from chart_render import CHART, KIND_VALUES, RELEASE, RenderFn
from gateway_harness import post_frames, write_gateway_config
from live_processes import free_port
from wma_fusion.app import create_app
from wma_local.children import start_model_server, wait_ready
from wma_local.samples import grey_frame, write_synthetic_bundle
from wma_local.stack import GatewayThread

FULLNAME = f"{RELEASE}-wma-ensemble"
SWITCHES = {"grafanaDashboard": {"enabled": True}, "prometheusRule": {"enabled": True}}
METRIC = re.compile(r"\b(wma_[a-z0-9_]+)\b")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", re.M)
MODEL = "9rfa62j1"


def dashboard_and_rules(render: RenderFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manifests = render(KIND_VALUES, overrides=SWITCHES)
    cm = manifests.get("ConfigMap", f"{FULLNAME}-dashboard")
    dashboard = json.loads(cm["data"]["wma-ensemble.json"])
    (rule,) = manifests.of_kind("PrometheusRule")
    rules: list[dict[str, Any]] = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    return dashboard, rules


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_both_are_off_by_default(render: RenderFn) -> None:
    manifests = render(KIND_VALUES)
    assert manifests.of_kind("PrometheusRule") == []
    assert [c for c in manifests.of_kind("ConfigMap") if "dashboard" in c["metadata"]["name"]] == []


def test_the_dashboard_configmap_carries_the_grafana_label_and_the_panels(
    render: RenderFn,
) -> None:
    manifests = render(KIND_VALUES, overrides=SWITCHES)
    cm = manifests.get("ConfigMap", f"{FULLNAME}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard, _ = dashboard_and_rules(render)
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for wanted in (
        "requests",
        "slo",
        "verdict",
        "banner",
        "degraded",
        "per model",
        "per replica",
        "errors",
        "open breakers",
        "queue",
        "batch size",
    ):
        assert wanted in titles, wanted
    slo = next(p for p in dashboard["panels"] if "SLO" in p["title"])
    steps = slo["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == 5  # the 5 s SLO line


def test_the_rules_hold_the_alerts_with_the_values_thresholds(render: RenderFn) -> None:
    _, rules = dashboard_and_rules(render)
    alerts = {r["alert"]: r for r in rules}
    assert set(alerts) == {
        "WmaGatewayLatencySLO",
        "WmaDegradedAnswers",
        "WmaModelNoHealthyReplica",
        "WmaReplicaBreakerOpen",
        "WmaModelServerQueueSaturated",
    }
    assert alerts["WmaGatewayLatencySLO"]["expr"].endswith("> 5")
    assert alerts["WmaDegradedAnswers"]["expr"].endswith("> 0.05")
    assert all(r["labels"]["severity"] in {"critical", "warning"} for r in rules)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Every sample name on the real /metrics of a gateway and a model server."""
    tmp = tmp_path_factory.mktemp("scrape")
    write_synthetic_bundle(tmp / "bundle.json", [MODEL])
    member = start_model_server(MODEL, tmp)
    try:
        wait_ready(member)
        dead = f"http://127.0.0.1:{free_port()}"  # refuses: a retry and an open breaker
        config = write_gateway_config(
            tmp / "gw.yaml",
            [{"id": MODEL, "endpoints": [dead, member.url]}],
            tmp / "bundle.json",
            fanout={"breaker": {"failure_threshold": 1}},
            reload={"enabled": False},
        )
        server = GatewayThread(create_app(config)).start()
        try:
            for level in (40, 200, 90, 160, 120, 60):
                response = post_frames(server.url, [grey_frame(level)] * 3, participant_id="p")
                assert response.status_code == 200, response.text
            text = httpx.get(f"{server.url}/metrics").text + httpx.get(f"{member.url}/metrics").text
        finally:
            server.stop()
    finally:
        member.stop()
    yield set(SAMPLE.findall(text))


def test_every_metric_the_dashboard_and_the_rules_name_is_exported(
    render: RenderFn, exported: set[str]
) -> None:
    dashboard, rules = dashboard_and_rules(render)
    exprs = dashboard_exprs(dashboard) + [r["expr"] for r in rules]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    named = {m for e in exprs for m in METRIC.findall(e)}
    assert len(named) >= 15, named
    missing = sorted(named - exported)
    assert not missing, f"named but not exported: {missing}"


def test_the_autoscalers_metric_is_exported(render: RenderFn, exported: set[str]) -> None:
    manifests = render(KIND_VALUES, overrides={"modelDefaults": {"autoscaling": {"enabled": True}}})
    queries = [
        s["spec"]["triggers"][0]["metadata"]["query"] for s in manifests.of_kind("ScaledObject")
    ]
    assert queries and all(set(METRIC.findall(q)) <= exported for q in queries), queries


def test_the_dashboard_file_is_the_one_the_configmap_ships(render: RenderFn) -> None:
    dashboard, _ = dashboard_and_rules(render)
    shipped = CHART / "files" / "grafana-dashboard.json"
    assert json.loads(shipped.read_text()) == dashboard
