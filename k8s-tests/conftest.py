"""Shared fixtures of the chart tests: render the chart offline with the Helm v4 SDK.

``render(*values_files, **overrides)`` returns a :class:`Manifests` (every
rendered object, parsed) so the tests read the chart the way a cluster would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from chart_render import (
    CHART,
    NAMESPACE,
    RELEASE,
    Manifests,
    RenderFn,
    ValuesFn,
    load_values,
    parse_manifests,
)


@pytest.fixture(scope="session")
def values_of() -> ValuesFn:
    """``values_of(*files, overrides=...)``: the values Helm would get from ``-f`` files."""
    return load_values


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: Any) -> RenderFn:
    def _render(*files: Path, overrides: dict[str, Any] | None = None) -> Manifests:
        values = load_values(*files, overrides=overrides)
        rendered = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        return parse_manifests(rendered)

    return _render
