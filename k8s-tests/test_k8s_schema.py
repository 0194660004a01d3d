"""values.schema.json and the chart's own checks refuse wrong values with a clear message.

Each case is a wrong value an operator could plausibly type; the install must
fail before anything reaches the cluster, and the message must name the value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import helm_python as helm
import pytest
from chart_render import CHART, PRODUCTION_VALUES, load_values

FOUR = [{"id": m} for m in ("9rfa62j1", "1mjgo9w1", "dfsesrgu", "4vtny88m")]

# (case id, values, substrings the message must contain)
SCHEMA_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("canary weight over 100", {"canary": {"weight": 150}}, ["/canary/weight", "maximum"]),
    ("no models", {"models": []}, ["/models", "minItems"]),
    ("otlp over grpc (not in the images)", {"otel": {"protocol": "grpc"}}, ["/otel/protocol"]),
    (
        "model without id",
        {"models": [{"aggregator": "topk4"}]},
        ["/models/0", "missing property 'id'"],
    ),
    (
        "unknown aggregator",
        {"models": [{"id": "9rfa62j1", "aggregator": "topk0"}]},
        ["/models/0/aggregator", "topk0"],
    ),
    (
        "gpu resource name without vendor prefix",
        {"modelDefaults": {"gpu": {"resourceName": "gpu"}}},
        ["/modelDefaults/gpu/resourceName", "does not match pattern"],
    ),
    (
        "unknown checkpoint source",
        {"modelDefaults": {"checkpoint": {"source": "ftp"}}},
        ["/modelDefaults/checkpoint/source", "value must be one of 'pvc', 'image'"],
    ),
    (
        "unknown backend",
        {"models": [{"id": "9rfa62j1", "backend": "onnx"}]},
        ["/models/0/backend", "value must be one of 'effort', 'mock'"],
    ),
    (
        "threshold outside (0, 1)",
        {"gateway": {"config": {"thresholds": {"t_low": 1.5, "t_high": 0.9}}}},
        ["/gateway/config/thresholds/t_low", "exclusiveMaximum"],
    ),
    (
        "shadow mode without the legacy path",
        {"gateway": {"config": {"rollout": {"mode": "shadow"}}}},
        ["/gateway/config/rollout", "missing property 'legacy'"],
    ),
    (
        "unknown rollout mode",
        {"gateway": {"config": {"rollout": {"mode": "blue-green"}}}},
        ["/gateway/config/rollout/mode", "value must be one of 'legacy'"],
    ),
    (
        "more than one connect retry",
        {"gateway": {"config": {"fanout": {"connect_retries": 3}}}},
        ["/gateway/config/fanout/connect_retries", "maximum"],
    ),
    (
        "typo in a gateway config key",
        {"gateway": {"config": {"fanuot": {}}}},
        ["/gateway/config", "'fanuot' not allowed"],
    ),
    ("typo in a top-level key", {"modelDefault": {}}, ["additional properties 'modelDefault'"]),
    (
        "root container",
        {"containerSecurityContext": {"runAsNonRoot": False}},
        ["/containerSecurityContext/runAsNonRoot", "must be true"],
    ),
    (
        "writable root filesystem",
        {"containerSecurityContext": {"readOnlyRootFilesystem": False}},
        ["/containerSecurityContext/readOnlyRootFilesystem", "must be true"],
    ),
    (
        "httpRoute without a parent gateway",
        {"httpRoute": {"enabled": True}},
        ["/httpRoute/parentRefs", "minItems"],
    ),
    ("malformed bundle pin", {"calibrators": {"sha256": "abc"}}, ["/calibrators/sha256"]),
    (
        "object store url that is not a url",
        {"modelDefaults": {"checkpoint": {"objectStore": {"url": "bucket/model.pth"}}}},
        ["/modelDefaults/checkpoint/objectStore/url"],
    ),
    ("port given as text", {"gateway": {"port": "http"}}, ["/gateway/port", "want integer"]),
]

# Refused by the templates (they need more than one value to decide).
RENDER_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "duplicate model id",
        {"models": [*FOUR, {"id": "9rfa62j1"}]},
        ['model id "9rfa62j1" is listed twice'],
    ),
    (
        "bundle pin that does not match the bundle",
        {"calibrators": {"sha256": "0" * 64}},
        ["calibrators.sha256: pinned 000", "but the bundle's bytes have sha256"],
    ),
    (
        "baked-in checkpoint without a path",
        {"models": [{"id": "9rfa62j1", "checkpoint": {"source": "image"}}]},
        ["models[9rfa62j1].checkpoint.path is required"],
    ),
    (
        "object store without a url",
        {"modelDefaults": {"checkpoint": {"source": "objectStore"}}},
        ["checkpoint.objectStore.url is required"],
    ),
    (
        "thresholds in the wrong order",
        {"gateway": {"config": {"thresholds": {"t_low": 0.9, "t_high": 0.5}}}},
        ["gateway.config.thresholds: t_low (0.9) must be below t_high (0.5)"],
    ),
]


SCHEMA_REFUSAL = "values don't meet the specifications of the schema"
# (expected error, values, substrings): schema cases also name the schema check.
REFUSALS = [
    pytest.param("HelmValuesError", v, [SCHEMA_REFUSAL, *e], id=f"schema: {name}")
    for name, v, e in SCHEMA_CASES
] + [pytest.param("HelmRenderError", v, e, id=f"templates: {name}") for name, v, e in RENDER_CASES]


@pytest.mark.parametrize(("error", "values", "expected"), REFUSALS)
def test_wrong_values_are_refused_naming_them(
    chart: Any, error: str, values: dict[str, Any], expected: list[str]
) -> None:
    """The schema (HelmValuesError) or the templates' checks (HelmRenderError) refuse."""
    # Over a production bundle: the defaults run the effort backend, which needs one.
    values = load_values(PRODUCTION_VALUES, overrides=values)
    with pytest.raises(getattr(helm, error)) as caught:
        chart.render(values=values, name="wma", namespace="wma-test")
    message = str(caught.value)
    for part in expected:
        assert part in message, message


def test_lint_reports_a_schema_violation_as_an_error(values_of: Callable[..., Any]) -> None:
    report = helm.lint(CHART, values_of(overrides={"canary": {"weight": -1}}))
    assert any("/canary/weight" in e for e in report["errors"]), report


def test_default_values_satisfy_the_schema(chart: Any) -> None:
    chart.validate_schema(chart.values)


def test_schema_of_gateway_config_has_exactly_the_gateways_config_keys(chart: Any) -> None:
    """The chart's schema mirrors wma_fusion.config: a key added there must be added here."""
    from pydantic import BaseModel
    from wma_fusion import config

    def keys(model: type[BaseModel]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, field in model.model_fields.items():
            nested = [
                a
                for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            out[name] = keys(nested[0]) if nested else None
        return out

    def schema_keys(node: dict[str, Any]) -> dict[str, Any]:
        options = node.get("oneOf", [node])
        obj = next((o for o in options if o.get("type") == "object"), None)
        if obj is None or "properties" not in obj:
            return {}
        return {
            name: (schema_keys(sub) if isinstance(sub, dict) and _is_object(sub) else None)
            for name, sub in obj["properties"].items()
        }

    def _is_object(node: dict[str, Any]) -> bool:
        return node.get("type") == "object" or any(
            o.get("type") == "object" for o in node.get("oneOf", [])
        )

    expected = keys(config.GatewayConfig)
    # The chart generates these two from `models:` and `calibrators:`.
    del expected["models"], expected["calibrators"]
    actual = schema_keys(chart.schema["definitions"]["gatewayConfig"])
    assert actual == expected
    assert expected["rollout"]["legacy"] and expected["fanout"]["breaker"]  # nested, not just names
