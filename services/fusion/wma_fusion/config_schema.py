"""The gateway config's JSON schema, in the form the Helm chart's values schema holds it.

``charts/wma-ensemble/values.schema.json`` validates ``gateway.config`` (and
``canary.config``) against ``definitions.gatewayConfig``; that part is generated
from the pydantic models of :mod:`wma_fusion.config` by ``scripts/gen_schema.py``
(a chart test fails when the file and the models drift apart). ``models`` and
``calibrators`` are left out: the chart writes them from its own values
(``models``, ``calibrators``), which ``definitions.modelSettings`` checks; the
aggregator pattern there is :data:`wma_core.aggregate.AGGREGATOR_PATTERN`.
"""

from __future__ import annotations

from typing import Any

from wma_fusion.config import GatewayConfig

__all__ = ["CHART_OWNED_KEYS", "gateway_config_schema"]

# Sections of the gateway config that the chart builds from other values.
CHART_OWNED_KEYS = ("models", "calibrators")
# What Helm's validator checks of an http(s) URL (pydantic's HttpUrl is stricter).
_URL = {"type": "string", "pattern": "^https?://.+"}
_ORDER = (
    "type",
    "enum",
    "pattern",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "properties",
    "additionalProperties",
    "required",
    "oneOf",
)
_DROPPED = {"title", "default", "description"}


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return _convert(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    if node.get("format") == "uri":
        return dict(_URL)
    if "anyOf" in node:
        choices = [_convert(c, defs) for c in node["anyOf"]]
        others = [c for c in choices if c != {"type": "null"}]
        if len(others) == 1 and len(choices) == 2:
            (other,) = others
            if "enum" in other:  # an optional choice: the choices and null
                return {"enum": [*other["enum"], None]}
            if set(other) == {"type"}:
                return {"type": [other["type"], "null"]}
            return {"oneOf": [{"type": "null"}, other]}
        return {"anyOf": choices}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            value = {name: _convert(prop, defs) for name, prop in value.items()}
        elif key == "enum" and "type" in node:
            out.pop("type", None)
        out[key] = value
    if "enum" in out:
        out.pop("type", None)
    return {k: out[k] for k in sorted(out, key=lambda k: (_ORDER + (k,)).index(k))}


def gateway_config_schema() -> dict[str, Any]:
    """``definitions.gatewayConfig`` of the chart's values schema."""
    raw = GatewayConfig.model_json_schema()
    defs = raw.get("$defs", {})
    props = {
        name: _convert(prop, defs)
        for name, prop in raw["properties"].items()
        if name not in CHART_OWNED_KEYS
    }
    return {"type": "object", "properties": props, "additionalProperties": False}
