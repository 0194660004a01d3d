"""The process's OpenTelemetry tracer provider, built from the standard ``OTEL_*``
variables, refusing the values it cannot honour; used by both services."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["tracer_provider_from_env"]

_EXPORTERS = ("otlp", "console", "none")
_OTLP_PROTOCOLS = ("http/protobuf",)  # the only OTLP exporter installed is OTLP/HTTP


def tracer_provider_from_env(
    default_service_name: str, env: Mapping[str, str] | None = None
) -> TracerProvider | None:
    """The SDK provider ``OTEL_TRACES_EXPORTER`` asks for (``otlp``, ``console``, a
    comma-separated list, or ``none``: then None, the API's no-op tracer is used).

    ``service.name`` is ``OTEL_SERVICE_NAME`` or ``default_service_name``.
    Raises ValueError (one line, ``VARIABLE=value is not supported; ...``) for an
    unknown exporter or an OTLP protocol other than ``http/protobuf``, so a typo
    never silently turns tracing off. Both services build their provider with it.
    """
    environ = os.environ if env is None else env
    raw = environ.get("OTEL_TRACES_EXPORTER") or "none"
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in _EXPORTERS]
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER={unknown[0]!r} is not supported; "
            f"use {', '.join(_EXPORTERS)} (comma-separated)"
        )
    names = [n for n in dict.fromkeys(names) if n != "none"]
    if not names or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if "otlp" in names:
        _check_otlp_protocol(environ)
    name = environ.get("OTEL_SERVICE_NAME") or default_service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    for exporter_name in names:
        exporter: Any = ConsoleSpanExporter()
        if exporter_name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _check_otlp_protocol(environ: Mapping[str, str]) -> None:
    for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(var, "").strip().lower()
        if protocol and protocol not in _OTLP_PROTOCOLS:
            raise ValueError(
                f"{var}={protocol!r} is not supported; OTLP is exported over HTTP "
                "(http/protobuf): point OTEL_EXPORTER_OTLP_ENDPOINT at the "
                "collector's HTTP port (4318)"
            )
        if protocol:
            return
