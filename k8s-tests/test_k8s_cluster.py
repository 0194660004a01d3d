"""Cluster tests: install the chart (kind values) into the current kubeconfig's cluster.

Run by ``k8s-tests/kind-e2e.sh`` after it built and loaded the images
(``wma-model-server:dev``, ``wma-gateway:dev``). The tests marked ``cluster``
are skipped, with the reason, when no cluster is reachable. The release goes
into a fresh namespace that is deleted afterwards; when a test of the module
failed (or the install did), its pods' state and logs and its events are
written to the terminal first.

The unmarked tests at the end run offline: they make the same SDK calls with
the same arguments (install as a client-side dry run, the others bound to the
installed SDK's signatures) and render the same values, so a renamed SDK
argument, a chart name or a weight the cluster tests expect fails without a
cluster too.

Environment:
    WMA_E2E_GATEWAY_URL  how this machine reaches the gateway Service
                         (default http://127.0.0.1:30080: the NodePort of the
                         kind values, mapped to the host by kind-config.yaml)
    WMA_E2E_TIMEOUT_S    install / rollout timeout (default 600)
    WMA_E2E_REQUIRE_CLUSTER=1  fail instead of skipping when no cluster is
                         reachable (kind-e2e.sh sets it)
    WMA_E2E_KEEP_NAMESPACE=1  leave the release and its namespace installed
                         afterwards (the kind workflow sets it, so its
                         failure step still finds them)
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import helm_python as helm
import httpx
import pytest
import urllib3
import yaml
from chart_render import CHART, KIND_VALUES, load_values, parse_manifests
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from live_processes import poll_ok
from wma_local.samples import grey_frame

RELEASE = "wma-e2e"
TIMEOUT_S = int(os.environ.get("WMA_E2E_TIMEOUT_S", "600"))
GATEWAY_URL = os.environ.get("WMA_E2E_GATEWAY_URL", "http://127.0.0.1:30080")
KEEP_NAMESPACE = os.environ.get("WMA_E2E_KEEP_NAMESPACE") == "1"
LOG_TAIL_LINES = 200
EVENTS_SHOWN = 100
# Names the chart gives release RELEASE (checked offline below).
ROUTE = f"{RELEASE}-wma-ensemble"  # the chart's <fullname>
STABLE_SERVICE = f"{ROUTE}-gateway"
CANARY_SERVICE = f"{ROUTE}-gateway-canary"
CANARY_WEIGHTS = (10, 40)
# A kubeconfig whose API server cannot answer: the offline tests never touch a real cluster.
UNREACHABLE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
users: [{name: none, user: {token: none}}]
"""


def _no_cluster(reason: str) -> None:
    if os.environ.get("WMA_E2E_REQUIRE_CLUSTER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def install_kwargs(namespace: str) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "create_namespace": True,
        "wait": "watcher",
        "timeout": TIMEOUT_S,
    }


def upgrade_kwargs(namespace: str) -> dict[str, Any]:
    return {"namespace": namespace, "wait": "watcher", "timeout": TIMEOUT_S}


UNINSTALL_KWARGS: dict[str, Any] = {
    "ignore_not_found": True,
    "wait": "watcher",
    "timeout": TIMEOUT_S,
}
TEST_KWARGS: dict[str, Any] = {"timeout": 300, "logs": True}


def canary_values(values: dict[str, Any], weight: int) -> dict[str, Any]:
    """The kind values plus a canary at ``weight`` % behind an HTTPRoute."""
    return values | {
        "canary": {**values.get("canary", {}), "enabled": True, "weight": weight},
        "httpRoute": {"enabled": True, "parentRefs": [{"name": "wma-e2e-gw"}]},
    }


def expected_route_weights(weight: int) -> dict[str, int]:
    return {STABLE_SERVICE: 100 - weight, CANARY_SERVICE: weight}


@pytest.fixture(scope="module")
def cluster() -> Any:
    try:
        k8s_config.load_kube_config()
    except Exception as exc:  # no kubeconfig, no current context, ...
        _no_cluster(f"no Kubernetes cluster configured (kubeconfig: {exc})")
    api = k8s_client.CoreV1Api()
    try:
        _probe(api)
    except Exception as exc:
        _no_cluster(f"the cluster of the current kubeconfig is not reachable: {exc}")
    return api


@pytest.fixture(scope="module")
def release(request: pytest.FixtureRequest, cluster: Any) -> Iterator[dict[str, Any]]:
    namespace = f"wma-e2e-{uuid.uuid4().hex[:6]}"
    values = load_values(KIND_VALUES)
    failed_before = request.session.testsfailed
    with helm.Config(namespace=namespace) as cfg:
        try:
            cfg.install(str(CHART), RELEASE, values, **install_kwargs(namespace))
            yield {"cfg": cfg, "namespace": namespace, "values": values}
        except BaseException:
            _report(request.config, _diagnostics(cluster, namespace))
            raise
        else:
            if request.session.testsfailed > failed_before:
                _report(request.config, _diagnostics(cluster, namespace))
        finally:
            # The diagnostics come first: the namespace takes the pods and events with it.
            if KEEP_NAMESPACE:
                _report(request.config, [f"kind-e2e: keeping release {RELEASE} in {namespace}"])
            else:
                cfg.uninstall(RELEASE, **UNINSTALL_KWARGS)
                _delete_namespace(cluster, namespace)


def _report(config: pytest.Config, lines: list[str]) -> None:
    """To the terminal, past pytest's capture (a fixture's teardown output is never shown)."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        sys.stdout.write("\n" + "".join(f"{line}\n" for line in lines))
        sys.stdout.flush()


def _diagnostics(core: Any, namespace: str) -> list[str]:
    """The release's pods (phase, container states, log tails) and the namespace's events."""
    lines = [f"==== diagnostics of namespace {namespace} ===="]
    try:
        pods = _pods(core, namespace)
        events = _events(core, namespace)
    except Exception as exc:  # the cluster went away: say so, keep the test's own failure
        return [*lines, f"cannot read the namespace: {exc!r}"]
    for pod in pods:
        lines.append(f"---- pod {pod.metadata.name}: {pod.status.phase}")
        for status in pod.status.container_statuses or []:
            lines.append(f"  {status.name}: ready={status.ready} restarts={status.restart_count}")
            lines.append(f"    state: {_state(status.state)}")
        for container in pod.spec.containers:
            lines.append(f"  logs of {container.name} (last {LOG_TAIL_LINES} lines):")
            try:
                log = _pod_log(core, namespace, pod.metadata.name, container.name)
            except k8s_client.ApiException as exc:
                log = f"(no log: {exc.status} {exc.reason})"
            lines.extend(f"    {line}" for line in log.splitlines())
    lines.append(f"---- events (last {EVENTS_SHOWN})")
    for event in events[-EVENTS_SHOWN:]:
        obj = event.involved_object
        lines.append(f"  {event.type} {event.reason} {obj.kind}/{obj.name}: {event.message}")
    return lines


def _state(state: Any) -> str:
    if state is None:
        return "unknown"
    if state.waiting is not None:
        return f"waiting {state.waiting.reason}: {state.waiting.message or ''}".rstrip(": ")
    if state.terminated is not None:
        return f"terminated {state.terminated.reason} (exit {state.terminated.exit_code})"
    return "running"


# ---- every kubernetes client call of these tests (also made offline, below) ----


def _probe(core: Any) -> None:
    core.list_namespace(limit=1, _request_timeout=5)


def _delete_namespace(core: Any, namespace: str) -> None:
    try:
        core.delete_namespace(namespace)
    except k8s_client.ApiException as exc:
        if exc.status != 404:  # 404: the install failed before creating it
            raise


def _pods(core: Any, namespace: str) -> list[Any]:
    return list(core.list_namespaced_pod(namespace, _request_timeout=10).items)


def _pod_log(core: Any, namespace: str, pod: str, container: str) -> str:
    log: str = core.read_namespaced_pod_log(
        pod, namespace, container=container, tail_lines=LOG_TAIL_LINES, _request_timeout=10
    )
    return log


def _events(core: Any, namespace: str) -> list[Any]:
    """The namespace's events, oldest first."""
    found = core.list_namespaced_event(namespace, _request_timeout=10).items
    return sorted(found, key=_event_time)


def _event_time(event: Any) -> datetime:
    when = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
    return when if when is not None else datetime.min.replace(tzinfo=UTC)


def _release_deployments(apps: Any, namespace: str) -> list[Any]:
    found = apps.list_namespaced_deployment(
        namespace, label_selector=f"app.kubernetes.io/instance={RELEASE}"
    )
    return list(found.items)


def _httproutes_installed(extensions: Any) -> bool:
    try:
        extensions.read_custom_resource_definition("httproutes.gateway.networking.k8s.io")
    except k8s_client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _route_weights(custom: Any, namespace: str) -> dict[str, int]:
    route = custom.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", ROUTE
    )
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}


def _pending(deployments: list[Any]) -> list[str]:
    pending = []
    for d in deployments:
        want = d.spec.replicas if d.spec.replicas is not None else 1
        status = d.status
        if (
            (status.updated_replicas or 0) < want
            or (status.available_replicas or 0) < want
            or (status.observed_generation or 0) < (d.metadata.generation or 0)
        ):
            pending.append(d.metadata.name)
    return pending


def _wait_rolled_out(namespace: str) -> list[Any]:
    apps = k8s_client.AppsV1Api()
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        deployments = _release_deployments(apps, namespace)
        pending = _pending(deployments)
        if deployments and not pending:
            return deployments
        assert time.monotonic() < deadline, f"not rolled out after {TIMEOUT_S}s: {pending}"
        time.sleep(2)


def _wait_gateway_reachable(timeout_s: float = 120.0) -> None:
    """The NodePort answers a little after the pod is ready (endpoints, kube-proxy)."""
    last = poll_ok(f"{GATEWAY_URL}/readyz", timeout_s, interval=1, request_timeout=5.0)
    if last is not None:
        pytest.fail(f"gateway not reachable at {GATEWAY_URL}/readyz after {timeout_s}s: {last}")


@pytest.mark.cluster
def test_release_rolls_out_four_model_servers_and_a_gateway(release: dict[str, Any]) -> None:
    deployments = _wait_rolled_out(release["namespace"])
    components = sorted(d.metadata.labels["app.kubernetes.io/component"] for d in deployments)
    assert components == ["gateway"] + ["model-server"] * 4


@pytest.mark.cluster
def test_helm_test_pod_gets_a_verdict_from_the_gateway(release: dict[str, Any]) -> None:
    _wait_rolled_out(release["namespace"])
    # A failing test pod raises HelmReleaseError; its last line on success is "ok: ...".
    result = release["cfg"].test(RELEASE, **TEST_KWARGS)
    assert "ok:" in result.get("logs", ""), result


@pytest.mark.cluster
def test_a_27_frame_batch_gets_a_verdict_with_every_model_ok(release: dict[str, Any]) -> None:
    _wait_rolled_out(release["namespace"])
    _wait_gateway_reachable()
    files = [
        ("files", (f"f{i}.png", grey_frame(60 + 6 * i, size=64), "image/png")) for i in range(27)
    ]
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


@pytest.mark.cluster
def test_canary_weight_change_reaches_the_httproute(release: dict[str, Any]) -> None:
    if not _httproutes_installed(k8s_client.ApiextensionsV1Api()):
        pytest.skip("Gateway API CRDs are not installed (kind-e2e.sh installs them)")
    namespace = release["namespace"]
    custom = k8s_client.CustomObjectsApi()
    for weight in CANARY_WEIGHTS:
        release["cfg"].upgrade(
            str(CHART),
            RELEASE,
            canary_values(release["values"], weight),
            **upgrade_kwargs(namespace),
        )
        assert _route_weights(custom, namespace) == expected_route_weights(weight)
    _wait_rolled_out(namespace)


# ---- offline: the same calls and values, no cluster -------------------------------------


def test_install_call_as_written_renders_the_release_the_cluster_tests_expect() -> None:
    """The fixture's exact install call, as a client-side dry run (no API server contacted)."""
    namespace = "wma-e2e-offline"
    with helm.Config(namespace=namespace, kubeconfig_content=UNREACHABLE_KUBECONFIG) as cfg:
        result = cfg.install(
            str(CHART),
            RELEASE,
            load_values(KIND_VALUES),
            **install_kwargs(namespace),
            dry_run="client",
        )
    assert result["name"] == RELEASE and result["namespace"] == namespace
    objects = [doc for doc in yaml.safe_load_all(result["manifest"]) if doc]
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    components = sorted(d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments)
    assert components == ["gateway"] + ["model-server"] * 4
    for d in deployments:
        assert d["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    (service,) = [
        o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == STABLE_SERVICE
    ]
    port = int(GATEWAY_URL.rsplit(":", 1)[1])
    assert service["spec"]["type"] == "NodePort"
    assert [p.get("nodePort") for p in service["spec"]["ports"]] == [port]


def test_the_other_sdk_calls_match_the_installed_sdk() -> None:
    """upgrade / test / uninstall need a cluster: bind their arguments to the real signatures."""
    namespace = "wma-e2e-offline"
    inspect.signature(helm.Config.upgrade).bind(
        None, str(CHART), RELEASE, {}, **upgrade_kwargs(namespace)
    )
    inspect.signature(helm.Config.test).bind(None, RELEASE, **TEST_KWARGS)
    inspect.signature(helm.Config.uninstall).bind(None, RELEASE, **UNINSTALL_KWARGS)
    with helm.Config(namespace=namespace, kubeconfig_content=UNREACHABLE_KUBECONFIG) as cfg:
        # How an unreachable cluster surfaces: a HelmKubeError naming it, not a hang.
        with pytest.raises(helm.HelmKubeError, match="unreachable"):
            cfg.uninstall(RELEASE, **{**UNINSTALL_KWARGS, "timeout": 5})


def test_canary_values_render_the_route_weights_the_cluster_test_expects(chart: Any) -> None:
    for weight in CANARY_WEIGHTS:
        rendered = chart.render(
            values=canary_values(load_values(KIND_VALUES), weight),
            name=RELEASE,
            namespace="wma-e2e-offline",
            is_upgrade=True,
        )
        objects = parse_manifests(rendered).objects
        (route,) = [o for o in objects if o["kind"] == "HTTPRoute"]
        assert route["metadata"]["name"] == ROUTE
        weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
        assert weights == expected_route_weights(weight)
        services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
        assert {STABLE_SERVICE, CANARY_SERVICE} <= services


def test_helm_test_hook_prints_the_line_the_cluster_test_looks_for(chart: Any) -> None:
    rendered = chart.render(
        values=load_values(KIND_VALUES), name=RELEASE, namespace="wma-e2e-offline", is_install=True
    )
    (pod,) = [
        o
        for o in parse_manifests(rendered).objects
        if o["kind"] == "Pod" and o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    ]
    (container,) = pod["spec"]["containers"]
    assert 'print("ok:"' in "\n".join(container["args"])


def test_the_kubernetes_client_calls_are_well_formed() -> None:
    """Each call, against an API server that refuses connections: a bad argument name or
    type fails before any request (pydantic/ApiTypeError); a well-formed one gets as far
    as the connection."""
    configuration = k8s_client.Configuration(host="https://127.0.0.1:1")
    configuration.retries = 0
    api = k8s_client.ApiClient(configuration)
    calls: list[Callable[[], object]] = [
        lambda: _probe(k8s_client.CoreV1Api(api)),
        lambda: _delete_namespace(k8s_client.CoreV1Api(api), "wma-e2e-offline"),
        lambda: _pods(k8s_client.CoreV1Api(api), "wma-e2e-offline"),
        lambda: _pod_log(k8s_client.CoreV1Api(api), "wma-e2e-offline", "pod", "container"),
        lambda: _events(k8s_client.CoreV1Api(api), "wma-e2e-offline"),
        lambda: _release_deployments(k8s_client.AppsV1Api(api), "wma-e2e-offline"),
        lambda: _httproutes_installed(k8s_client.ApiextensionsV1Api(api)),
        lambda: _route_weights(k8s_client.CustomObjectsApi(api), "wma-e2e-offline"),
    ]
    for call in calls:
        with pytest.raises(urllib3.exceptions.MaxRetryError):
            call()


class _FakeCore:
    """The three CoreV1Api reads of the failure diagnostics, answering with real models."""

    def __init__(self) -> None:
        m = k8s_client
        stuck = m.V1ContainerStatus(
            name="gateway",
            image="wma-gateway:dev",
            image_id="",
            ready=False,
            restart_count=0,
            state=m.V1ContainerState(
                waiting=m.V1ContainerStateWaiting(reason="ImagePullBackOff", message="no pull")
            ),
        )
        self.pod = m.V1Pod(
            metadata=m.V1ObjectMeta(name="wma-e2e-gateway-abc"),
            spec=m.V1PodSpec(containers=[m.V1Container(name="gateway")]),
            status=m.V1PodStatus(phase="Pending", container_statuses=[stuck]),
        )
        self.events = [
            m.CoreV1Event(
                metadata=m.V1ObjectMeta(name=f"e{i}"),
                involved_object=m.V1ObjectReference(kind="Pod", name="wma-e2e-gateway-abc"),
                type="Warning",
                reason=reason,
                message=f"message {i}",
                last_timestamp=datetime(2024, 1, 1, 0, 0, i, tzinfo=UTC),
            )
            for i, reason in [(2, "Failed"), (1, "Pulling")]
        ]

    def list_namespaced_pod(self, namespace: str, **_: Any) -> Any:
        return k8s_client.V1PodList(items=[self.pod])

    def read_namespaced_pod_log(self, name: str, namespace: str, **kwargs: Any) -> str:
        assert kwargs["container"] == "gateway" and kwargs["tail_lines"] == LOG_TAIL_LINES
        raise k8s_client.ApiException(status=400, reason="container is waiting to start")

    def list_namespaced_event(self, namespace: str, **_: Any) -> Any:
        return k8s_client.CoreV1EventList(items=self.events)


def test_failure_diagnostics_show_pod_states_logs_and_events_in_order() -> None:
    text = "\n".join(_diagnostics(_FakeCore(), "wma-e2e-x"))
    assert "pod wma-e2e-gateway-abc: Pending" in text
    assert "waiting ImagePullBackOff: no pull" in text
    assert "logs of gateway" in text and "(no log: 400 container is waiting to start)" in text
    assert text.index("Pulling") < text.index("Failed")  # oldest event first
    assert "Warning Failed Pod/wma-e2e-gateway-abc: message 2" in text


def test_failure_diagnostics_survive_a_cluster_that_went_away() -> None:
    class Gone:
        def list_namespaced_pod(self, namespace: str, **_: Any) -> Any:
            raise ConnectionRefusedError("refused")

    lines = _diagnostics(Gone(), "wma-e2e-x")
    assert lines[-1] == "cannot read the namespace: ConnectionRefusedError('refused')"
