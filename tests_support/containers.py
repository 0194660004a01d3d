"""The chart's rendered workloads as Docker containers, for ``make e2e``.

:func:`build_image` builds a Dockerfile with the context BuildKit would send
(the Dockerfile's own ``<name>.dockerignore``) and no network. :class:`Release`
turns the rendered Deployments (and the helm-test Pod) into containers on one
Docker network: image, command, args and env as rendered; ConfigMap volumes as
read-only bind mounts of their files; emptyDirs as tmpfs; the pod and
container securityContext as the container's user, read-only root filesystem,
dropped capabilities and no-new-privileges; memory limits as memory limits.
A Deployment of ``replicas: n`` is n containers (``<name>``, ``<name>-r2``, ...).
Each Service's DNS names (``svc``, ``svc.ns.svc``, ``svc.ns.svc.cluster.local``)
are network aliases of the containers its selector matches, so a name of a
Service that selects several containers resolves to all their addresses (what a
headless Service gives in a cluster). Docker has no
Service ports, so where a Service's port differs from its target port, URLs
naming ``host:port`` in ConfigMaps and env are rewritten to the target port
(kube-proxy's job); nothing else is changed.
"""

from __future__ import annotations

import io
import re
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
from chart_render import NAMESPACE, REPO, Manifests
from docker.utils.build import exclude_paths

LABEL = "io.wma.e2e"


def build_context(dockerfile: Path) -> bytes:
    """The tar BuildKit sends for ``docker build -f <dockerfile> .`` at the repo root."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    patterns = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    relative = dockerfile.relative_to(REPO).as_posix()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(exclude_paths(str(REPO), patterns, dockerfile=relative)):
            tar.add(REPO / path, arcname=path, recursive=False)
    return buf.getvalue()


def build_image(
    client: Any, dockerfile: Path, tag: str, build_args: dict[str, str]
) -> tuple[Any, list[str]]:
    """Build with the engine's classic builder, offline (``network_mode="none"``)."""
    context = build_context(dockerfile)
    log: list[str] = []
    stream = client.api.build(
        fileobj=io.BytesIO(context),
        custom_context=True,
        dockerfile=dockerfile.relative_to(REPO).as_posix(),
        tag=tag,
        buildargs=build_args,
        network_mode="none",
        rm=True,
        forcerm=True,
        decode=True,
    )
    for chunk in stream:
        if "stream" in chunk:
            log.append(chunk["stream"])
        if "error" in chunk:
            raise RuntimeError(f"building {tag} failed: {chunk['error']}\n{''.join(log)[-4000:]}")
    return client.images.get(tag), log


_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|K|M|G)?$")
_UNITS = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def memory_bytes(quantity: str) -> int:
    match = _QUANTITY.match(str(quantity))
    assert match, f"unsupported memory quantity {quantity!r}"
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class Workload:
    """One pod's first container, as a container on the release's network."""

    name: str
    kind: str
    labels: dict[str, str]
    spec: dict[str, Any]
    aliases: list[str] = field(default_factory=list)
    container: Any = None

    @property
    def main(self) -> dict[str, Any]:
        containers: list[dict[str, Any]] = self.spec["containers"]
        return containers[0]


class Release:
    """A rendered release run as Docker containers (see the module docstring)."""

    def __init__(self, client: Any, manifests: Manifests, root: Path, prefix: str) -> None:
        self.client = client
        self.manifests = manifests
        self.root = root
        self.prefix = prefix
        self.network: Any = None
        self.rewrites: dict[str, str] = {}
        self.configmaps: dict[str, dict[str, str]] = {}
        self.workloads: dict[str, Workload] = {}
        self._plan()

    def _plan(self) -> None:
        services = self.manifests.of_kind("Service")
        for deployment in self.manifests.of_kind("Deployment"):
            template = deployment["spec"]["template"]
            name = deployment["metadata"]["name"]
            # one container per replica (an autoscaled Deployment has no count: one)
            for i in range(int(deployment["spec"].get("replicas", 1))):
                self._add(name if i == 0 else f"{name}-r{i + 1}", "Deployment", template)
        for pod in self.manifests.of_kind("Pod"):
            self._add(pod["metadata"]["name"], "Pod", pod)
        for service in services:
            name = service["metadata"]["name"]
            matched = [
                w
                for w in self.workloads.values()
                if w.kind == "Deployment"
                and service["spec"]["selector"].items() <= w.labels.items()
            ]
            assert matched, f"Service {name} selects no workload"
            for workload in matched:
                workload.aliases += [
                    name,
                    f"{name}.{NAMESPACE}.svc",
                    f"{name}.{NAMESPACE}.svc.cluster.local",
                ]
                ports = {p["name"]: p["containerPort"] for p in workload.main.get("ports", [])}
                for port in service["spec"]["ports"]:
                    target = port.get("targetPort", port["port"])
                    target = ports[target] if isinstance(target, str) else target
                    if target != port["port"]:
                        for host in (name, f"{name}.{NAMESPACE}.svc"):
                            self.rewrites[f"{host}:{port['port']}"] = f"{host}:{target}"
        for cm in self.manifests.of_kind("ConfigMap"):
            self.configmaps[cm["metadata"]["name"]] = {
                key: self._rewrite(text) for key, text in cm["data"].items()
            }

    def _add(self, name: str, kind: str, template: dict[str, Any]) -> None:
        labels = dict(template.get("metadata", {}).get("labels", {}))
        self.workloads[name] = Workload(name, kind, labels, template["spec"])

    def _rewrite(self, text: str) -> str:
        for old, new in self.rewrites.items():
            text = re.sub(re.escape(old) + r"\b", new, text)
        return text

    def container_name(self, workload: str) -> str:
        return f"{self.prefix}-{workload}"

    # ---- turning a pod spec into container options ----

    def _volumes(self, workload: Workload) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        """(bind mounts, tmpfs mounts) for the workload's volumeMounts."""
        by_name = {v["name"]: v for v in workload.spec.get("volumes", [])}
        binds: dict[str, dict[str, str]] = {}
        tmpfs: dict[str, str] = {}
        for mount in workload.main.get("volumeMounts", []):
            volume = by_name[mount["name"]]
            if "emptyDir" in volume:
                size = volume["emptyDir"].get("sizeLimit")
                opts = f"size={memory_bytes(size)}" if size else ""
                uid = self._security(workload)["user"].split(":")[0]
                tmpfs[mount["mountPath"]] = ",".join(
                    o for o in (opts, f"uid={uid}", "mode=1777") if o
                )
                continue
            sources = list(volume.get("projected", {}).get("sources", []))
            if "configMap" in volume:
                sources.append({"configMap": volume["configMap"]})
            assert sources, f"{workload.name}: unsupported volume {volume}"
            local = self.root / workload.name / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            local.chmod(0o755)
            for source in sources:
                ref = source["configMap"]
                data = self.configmaps[ref["name"]]
                for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
                    target = local / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(data[item["key"]])
                    target.chmod(0o644)
            binds[str(local)] = {"bind": mount["mountPath"], "mode": "ro"}
        return binds, tmpfs

    def _security(self, workload: Workload) -> dict[str, Any]:
        pod = workload.spec.get("securityContext", {})
        ctx = {**pod, **workload.main.get("securityContext", {})}
        uid, gid = ctx.get("runAsUser"), ctx.get("runAsGroup", ctx.get("runAsUser"))
        assert uid is not None and ctx.get("runAsNonRoot", uid != 0), f"{workload.name}: root"
        options: dict[str, Any] = {"user": f"{uid}:{gid}"}
        options["read_only"] = bool(ctx.get("readOnlyRootFilesystem"))
        drop = ctx.get("capabilities", {}).get("drop", [])
        options["cap_drop"] = ["ALL"] if "ALL" in drop else list(drop)
        if ctx.get("allowPrivilegeEscalation") is False:
            options["security_opt"] = ["no-new-privileges"]
        if pod.get("fsGroup") is not None:
            options["group_add"] = [str(pod["fsGroup"])]
        return options

    def _env(self, workload: Workload) -> dict[str, str]:
        env: dict[str, str] = {}
        for entry in workload.main.get("env", []):
            if "value" in entry:
                value = str(entry["value"])
            else:
                field_path = entry["valueFrom"]["fieldRef"]["fieldPath"]
                assert field_path == "metadata.name", field_path
                value = self.container_name(workload.name)
            # The kubelet expands $(VAR) from earlier entries.
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)
            env[entry["name"]] = self._rewrite(value)
        return env

    def options(self, workload: Workload) -> dict[str, Any]:
        main = workload.main
        binds, tmpfs = self._volumes(workload)
        options: dict[str, Any] = {
            "image": main["image"],
            "entrypoint": main.get("command"),
            "command": [self._rewrite(a) for a in main.get("args", [])],
            "environment": self._env(workload),
            "volumes": binds,
            "tmpfs": tmpfs,
            "name": self.container_name(workload.name),
            "hostname": self.container_name(workload.name)[:63],
            "labels": {LABEL: self.prefix},
            "detach": True,
            **self._security(workload),
        }
        limit = main.get("resources", {}).get("limits", {}).get("memory")
        if limit:
            options["mem_limit"] = memory_bytes(limit)
        return options

    # ---- running ----

    def start_network(self) -> None:
        self.network = self.client.networks.create(
            f"{self.prefix}-net",
            driver="bridge",
            # Not internal: the host (the tests) must reach the containers; no
            # masquerading, so nothing in the release can reach beyond this machine.
            options={"com.docker.network.bridge.enable_ip_masquerade": "false"},
            labels={LABEL: self.prefix},
        )

    def run(self, name: str) -> Any:
        workload = self.workloads[name]
        options = self.options(workload)
        # Attached at creation (a later connect leaves the engine's default network
        # in the way of the host's route to it).
        endpoint = self.client.api.create_endpoint_config(aliases=workload.aliases or None)
        container = self.client.containers.create(
            network=self.network.name, networking_config={self.network.name: endpoint}, **options
        )
        container.start()
        workload.container = container
        return container

    def ip_of(self, name: str) -> str:
        container = self.workloads[name].container
        container.reload()
        address: str = container.attrs["NetworkSettings"]["Networks"][self.network.name][
            "IPAddress"
        ]
        return address

    def wait_exit(self, name: str, timeout_s: float) -> tuple[int, str]:
        container = self.workloads[name].container
        result = container.wait(timeout=timeout_s)
        logs: bytes = container.logs()
        return int(result["StatusCode"]), logs.decode(errors="replace")

    def logs(self) -> Iterator[str]:
        for workload in self.workloads.values():
            if workload.container is not None:
                try:
                    text = workload.container.logs(tail=40).decode(errors="replace")
                except docker.errors.NotFound:
                    continue
                yield f"--- {workload.name}\n{text}"

    def remove(self) -> None:
        for container in self.client.containers.list(
            all=True, filters={"label": f"{LABEL}={self.prefix}"}
        ):
            container.remove(force=True)
        for network in self.client.networks.list(filters={"label": f"{LABEL}={self.prefix}"}):
            # The engine detaches removed containers' endpoints asynchronously.
            wait_until(lambda n=network: _removed(n), 30.0, 0.5)


def _removed(network: Any) -> bool:
    try:
        network.remove()
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError as exc:
        if "active endpoints" in str(exc):
            return False
        raise
    return True


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.2) -> float:
    """Seconds until ``predicate()`` is true; raises TimeoutError after ``timeout_s``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"not true within {timeout_s} s")
        time.sleep(interval_s)
    return time.monotonic() - start
