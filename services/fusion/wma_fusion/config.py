"""The gateway configuration: one YAML schema, env overrides, strict validation.

The same file is read by ``wma gateway``, written by ``wma up`` and rendered by the
Helm chart's ConfigMap. Unknown keys are refused; every refusal names the field
(``models.1.endpoint: ...``). Nothing here touches the network or the bundle:
see :mod:`wma_fusion.state` for the checks against the calibrator bundle.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)
from wma_core import Thresholds
from wma_core.aggregate import AggregatorError, parse_aggregator
from wma_wire.frames import FrameLimits
from wma_wire.ids import ModelId

from wma_fusion.errors import ConfigError
from wma_fusion.rollout.config import RolloutConfig

CONFIG_ENV = "WMA_GATEWAY_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ``dns://name:port``: every address the name resolves to is a replica on ``port``
# (a Kubernetes headless Service gives one address per ready pod).
DISCOVER_PATTERN = r"^dns://[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252}[A-Za-z0-9])?:[0-9]{1,5}$"


class ModelEntry(_Strict):
    """One ensemble member: its replicas are ``endpoint`` (one), ``endpoints`` (a list)
    or ``discover`` (a DNS name re-resolved every ``fanout.discovery_interval_s``)."""

    id: ModelId
    endpoint: HttpUrl | None = None
    endpoints: list[HttpUrl] | None = Field(default=None, min_length=1, max_length=256)
    discover: str | None = Field(default=None, pattern=DISCOVER_PATTERN)
    protocol: Literal["oip", "legacy"] = "oip"
    aggregator: str | None = None
    timeout_s: float = Field(default=4.0, gt=0, le=60)

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        given = [k for k in ("endpoint", "endpoints", "discover") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of endpoint, endpoints, discover"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.endpoints is not None:
            urls = [str(u).rstrip("/") for u in self.endpoints]
            if len(set(urls)) != len(urls):
                raise ValueError("endpoints lists a URL twice")
        if self.discover is not None and not 0 < self.discover_target[1] < 65536:
            raise ValueError(f"discover: {self.discover!r} has no valid port")
        return self

    @field_validator("aggregator")
    @classmethod
    def _known_aggregator(cls, name: str | None) -> str | None:
        if name is not None:
            try:
                parse_aggregator(name)
            except AggregatorError as exc:
                raise ValueError(str(exc)) from None
        return name

    @property
    def static_urls(self) -> tuple[str, ...]:
        """The replicas' base URLs given in the config (none for ``discover``)."""
        if self.endpoint is not None:
            return (str(self.endpoint).rstrip("/"),)
        return tuple(str(u).rstrip("/") for u in self.endpoints or ())

    @property
    def discover_target(self) -> tuple[str, int]:
        """``(name, port)`` of a ``discover`` entry."""
        if self.discover is None:
            raise ValueError(f"model {self.id} has no discover name")
        name, _, port = self.discover.removeprefix("dns://").rpartition(":")
        return name, int(port)

    @property
    def source(self) -> str:
        """What the replicas come from, as one string (kept across reloads while equal)."""
        return self.discover or " ".join(self.static_urls)

    @property
    def base_url(self) -> str:
        """The first configured replica (the one of a single ``endpoint``)."""
        urls = self.static_urls
        if not urls:
            raise ValueError(f"model {self.id} discovers its replicas: no base URL")
        return urls[0]


class CalibratorsConfig(_Strict):
    path: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")


class ThresholdsConfig(_Strict):
    t_low: float = Field(gt=0, lt=1)
    t_high: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdsConfig:
        Thresholds(self.t_low, self.t_high)  # the core's rule: 0 < t_low < t_high < 1
        return self


class BreakerConfig(_Strict):
    failure_threshold: int = Field(default=5, ge=1, le=1000)
    reset_timeout_s: float = Field(default=10.0, gt=0, le=3600)


class SharedMemoryConfig(_Strict):
    """Members on the gateway's host (``wma up``): the gateway decodes a request's
    frames once and passes the pixels in a POSIX shared-memory slot, by reference,
    to every member that accepts it (model-server ``shared_memory``); the others,
    and requests that do not fit, get the encoded frames. Read at start."""

    enabled: bool = False
    # 16 x 6 MiB: 96 MiB of RAM reserved at start; 6 MiB holds 41 crops of 224 px.
    slots: int = Field(default=16, ge=1, le=1024, description="requests staged at once")
    slot_mib: int = Field(default=6, ge=1, le=1024, description="MiB per request's pixels")


class FanoutConfig(_Strict):
    deadline_s: float = Field(default=4.5, gt=0, le=120)
    connect_retries: int = Field(default=1, ge=0, le=1)
    max_connections: int = Field(default=64, ge=1, le=4096)
    # Attempts of one model call over its replicas (each replica at most once).
    max_attempts: int = Field(default=3, ge=1, le=16)
    discovery_interval_s: float = Field(default=5.0, gt=0, le=3600)
    breaker: BreakerConfig = BreakerConfig()
    shared_memory: SharedMemoryConfig = SharedMemoryConfig()


_MEMBER_LIMITS = FrameLimits()


class LimitsConfig(_Strict):
    """Request limits; the defaults are the model server's, so a frame the
    gateway accepts is never refused by a member."""

    max_files: int = Field(default=_MEMBER_LIMITS.max_files, ge=1, le=4096)
    max_file_bytes: int = Field(default=_MEMBER_LIMITS.max_file_bytes, ge=1)
    max_request_bytes: int = Field(default=_MEMBER_LIMITS.max_request_bytes, ge=1)
    max_frame_pixels: int = Field(default=_MEMBER_LIMITS.max_frame_pixels, ge=1)
    max_request_pixels: int = Field(default=_MEMBER_LIMITS.max_request_pixels, ge=1)


class TelemetryConfig(_Strict):
    service_name: str = Field(default="wma-gateway", min_length=1)
    traces_exporter: Literal["console", "otlp", "none"] | None = None
    slo_ms: float = Field(default=5000.0, gt=0)


class ReloadConfig(_Strict):
    enabled: bool = True
    interval_s: float = Field(default=2.0, gt=0, le=3600)


class GatewayConfig(_Strict):
    models: list[ModelEntry] = Field(min_length=1)
    calibrators: CalibratorsConfig
    thresholds: ThresholdsConfig | None = None
    fanout: FanoutConfig = FanoutConfig()
    limits: LimitsConfig = LimitsConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    reload: ReloadConfig = ReloadConfig()
    rollout: RolloutConfig = RolloutConfig()

    @field_validator("models")
    @classmethod
    def _unique_ids(cls, models: list[ModelEntry]) -> list[ModelEntry]:
        seen: set[str] = set()
        for entry in models:
            if entry.id in seen:
                raise ValueError(f"model id {entry.id!r} appears twice")
            seen.add(entry.id)
        return models


def _first_error(exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "<root>"
    problem = err["msg"]
    if err["type"] == "extra_forbidden":
        problem = "unknown key"
    more = len(exc.errors()) - 1
    return ConfigError(field, problem + (f" (and {more} more problems)" if more else ""))


_MODEL_ENV = re.compile(r"^MODEL([1-9][0-9]*)_(HOST|PORT)$")


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Apply the documented env overrides to a raw (unvalidated) config document."""
    doc = dict(raw)
    models = [dict(m) if isinstance(m, dict) else m for m in doc.get("models") or []]
    hosts: dict[int, dict[str, str]] = {}
    for name, value in env.items():
        if match := _MODEL_ENV.match(name):
            hosts.setdefault(int(match.group(1)), {})[match.group(2)] = value
    for n, parts in sorted(hosts.items()):
        var = f"MODEL{n}_{next(iter(parts))}"
        if n > len(models) or not isinstance(models[n - 1], dict):
            raise ConfigError(var, f"the config has no models.{n - 1} entry to override")
        entry = models[n - 1]
        if "endpoints" in entry or "discover" in entry:
            raise ConfigError(var, f"models.{n - 1} has several replicas, not one endpoint")
        old = urlsplit(str(entry.get("endpoint", "http://127.0.0.1:8999")))
        host = parts.get("HOST", old.hostname or "127.0.0.1")
        port = parts.get("PORT", str(old.port or 8999))
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"MODEL{n}_PORT", f"must be a port number, got {port!r}")
        entry["endpoint"] = f"{old.scheme or 'http'}://{host}:{port}"
    if models:
        doc["models"] = models
    cal = dict(doc.get("calibrators") or {})
    if "CALIBRATORS_PATH" in env:  # a path typed in a shell: relative to the working dir
        cal["path"] = str(Path(env["CALIBRATORS_PATH"]).resolve())
    if "CALIBRATORS_SHA256" in env:
        cal["sha256"] = env["CALIBRATORS_SHA256"] or None
    if cal:
        doc["calibrators"] = cal
    rollout = dict(doc.get("rollout") or {})
    if "WMA_ROLLOUT_MODE" in env:
        rollout["mode"] = env["WMA_ROLLOUT_MODE"]
    if "WMA_CANARY_PERCENT" in env:
        rollout["canary_percent"] = env["WMA_CANARY_PERCENT"]
    if rollout:
        doc["rollout"] = rollout
    return doc


def parse_config(
    text: str | bytes, *, base_dir: Path, env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Validate config text; a relative ``calibrators.path`` from the file resolves
    against ``base_dir`` (one from ``CALIBRATORS_PATH`` against the working directory)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError("<root>", "must be a mapping")
    doc = apply_env(raw, os.environ if env is None else env)
    try:
        config = GatewayConfig.model_validate(doc)
    except ValidationError as exc:
        raise _first_error(exc) from None
    path = Path(config.calibrators.path)
    if not path.is_absolute():
        path = base_dir / path
        calibrators = config.calibrators.model_copy(update={"path": str(path)})
        config = config.model_copy(update={"calibrators": calibrators})
    return config


def resolve_config_path(path: str | Path | None, env: Mapping[str, str] | None = None) -> Path:
    """The config file: ``path`` if given, else ``$WMA_GATEWAY_CONFIG``."""
    chosen = str(path) if path else (os.environ if env is None else env).get(CONFIG_ENV)
    if not chosen:
        raise ConfigError("--config", f"no config file given (nor ${CONFIG_ENV})")
    return Path(chosen)


def read_config(path: Path, env: Mapping[str, str] | None = None) -> tuple[GatewayConfig, bytes]:
    """Read and validate a config file; returns the config and the bytes it came from."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError("<file>", f"cannot read {path}: {exc.strerror}") from None
    return parse_config(data, base_dir=path.parent, env=env), data
