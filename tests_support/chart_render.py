"""The Helm chart as the chart tests read it: its paths, values files and rendered objects.

Plain code shared by ``k8s-tests`` (conftest fixtures and test modules alike):
the repo's chart and CI values files, the release the offline renders use,
Helm-style values merging, and :class:`Manifests`, one render parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent  # tests_support/ is at the repo root
CHART = REPO / "charts" / "wma-ensemble"
KIND_VALUES = REPO / "ci" / "kind-values.yaml"
GPU_VALUES = REPO / "ci" / "gpu-values.example.yaml"
# The default values' production bundle (`--set-file calibrators.bundle=...`):
# the defaults run the effort backend, which the chart refuses without one.
PRODUCTION_VALUES = REPO / "k8s-tests" / "fixtures" / "production-values.yaml"
RELEASE = "wma"
NAMESPACE = "wma-test"
# The chart's <fullname> for RELEASE (no name overrides): the prefix of every object name.
FULLNAME = f"{RELEASE}-wma-ensemble"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge like Helm's ``-f a.yaml -f b.yaml``: maps deeply, everything else replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_values(*files: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in files:
        values = deep_merge(values, yaml.safe_load(path.read_text()) or {})
    return deep_merge(values, overrides or {})


@dataclass(frozen=True)
class Manifests:
    """The objects of one render, plus the raw text of each template (NOTES too)."""

    objects: list[dict[str, Any]]
    templates: dict[str, str]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def component(self, kind: str, component: str) -> list[dict[str, Any]]:
        return [
            o
            for o in self.of_kind(kind)
            if o["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]

    def gateway_config(self, track: str = "stable") -> dict[str, Any]:
        suffix = "gateway" if track == "stable" else f"gateway-{track}"
        cm = self.get("ConfigMap", f"{FULLNAME}-{suffix}")
        config: dict[str, Any] = yaml.safe_load(cm["data"]["gateway.yaml"])
        return config

    def bundle_bytes(self) -> bytes:
        cm = self.get("ConfigMap", f"{FULLNAME}-calibrators")
        data: str = cm["data"]["bundle.json"]
        return data.encode()


def parse_manifests(rendered: dict[str, str]) -> Manifests:
    objects: list[dict[str, Any]] = []
    for name, text in sorted(rendered.items()):
        if name.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Manifests(objects, rendered)


RenderFn = Callable[..., Manifests]
ValuesFn = Callable[..., dict[str, Any]]
