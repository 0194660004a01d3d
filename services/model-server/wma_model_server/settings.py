"""Settings of one model-server process (env prefix ``WMA_MS_``), validated at start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from wma_wire.auth import TokenError, read_token
from wma_wire.frames import FrameLimits
from wma_wire.ids import ModelId

__all__ = ["ModelServerSettings"]

_LIMITS = FrameLimits()


class ModelServerSettings(BaseSettings):
    """Everything a model server needs; see docs/model-server.md for each field."""

    # hide_input_in_errors: a refused setting must not print the token it was given
    model_config = SettingsConfigDict(
        env_prefix="WMA_MS_", extra="forbid", frozen=True, hide_input_in_errors=True
    )

    model_id: ModelId
    backend: Literal["mock", "effort"] = "mock"
    checkpoint: Path | None = None
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$")
    dtype: Literal["auto", "float32", "tf32", "bfloat16", "float16"] = Field(
        "auto", description="auto: fp32 (see docs/benchmarks.md, Precision)"
    )
    num_heads: int | None = Field(None, ge=1, description="override for the Effort backbone")
    interpolation: Literal["area", "bilinear", "bicubic", "nearest"] = "area"
    cpu_threads: int | None = Field(
        None, ge=1, le=256, description="effort on CPU: torch intra-op threads (process-wide)"
    )
    bias: float = Field(0.0, ge=-1.0, le=1.0, description="mock backend: added to every prob")

    max_batch: int = Field(32, ge=1, le=1024)
    # 0: a pass starts as soon as the model is free; frames that arrive while it is
    # busy share the next one. > 0: an idle model also waits up to this long for more.
    max_delay_ms: float = Field(0.0, ge=0.0, le=1000.0)
    max_queue_frames: int = Field(256, ge=1)
    decode_threads: int | None = Field(
        None, ge=1, le=256, description="threads decoding frames (default: one per CPU)"
    )

    # Defaults live in FrameLimits only (the gateway uses the same ones).
    max_files: int = Field(default=_LIMITS.max_files, ge=1)
    max_file_bytes: int = Field(default=_LIMITS.max_file_bytes, ge=1)
    max_request_bytes: int = Field(default=_LIMITS.max_request_bytes, ge=1)
    max_frame_pixels: int = Field(default=_LIMITS.max_frame_pixels, ge=1)
    max_request_pixels: int = Field(default=_LIMITS.max_request_pixels, ge=1)

    # Opt-in: callers on this host (the gateway of `wma up`) may register POSIX
    # shared-memory regions and send decoded frames by reference (docs/model-server.md).
    shared_memory: bool = Field(
        False, description="accept inputs in registered /dev/shm regions (same host only)"
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    debug_dir: Path | None = Field(
        None, description="opt-in: where debug=true requests may save their frames"
    )
    # WMA_MS_TOKEN / WMA_MS_TOKEN_FILE: every route but the probes and /metrics then
    # needs "Authorization: Bearer <token>" (wma_wire.auth). Env only: no CLI flag,
    # so the token never shows in a process list.
    token: SecretStr | None = Field(None, description="bearer token (off when unset)")
    token_file: Path | None = Field(None, description="a file holding the bearer token")

    @model_validator(mode="after")
    def _consistent(self) -> ModelServerSettings:
        if self.backend == "effort" and self.checkpoint is None:
            raise ValueError("backend 'effort' needs a checkpoint path")
        if self.max_queue_frames < self.max_files:
            raise ValueError("max_queue_frames must be >= max_files, or full requests never fit")
        if self.max_request_bytes < self.max_file_bytes:
            raise ValueError("max_request_bytes must be >= max_file_bytes")
        self.frame_limits  # noqa: B018 - validates the limits eagerly
        try:
            self.bearer_token  # noqa: B018 - refuses an empty or unreadable token at start
        except TokenError as exc:
            raise ValueError(exc.message) from None
        return self

    @property
    def bearer_token(self) -> str | None:
        """The token requests must carry, or ``None`` (auth off)."""
        env: dict[str, str] = {}
        if self.token is not None:
            env["WMA_MS_TOKEN"] = self.token.get_secret_value()
        if self.token_file is not None:
            env["WMA_MS_TOKEN_FILE"] = str(self.token_file)
        return read_token(env, "WMA_MS_TOKEN")

    @property
    def frame_limits(self) -> FrameLimits:
        return FrameLimits(
            max_files=self.max_files,
            max_file_bytes=self.max_file_bytes,
            max_request_bytes=self.max_request_bytes,
            max_frame_pixels=self.max_frame_pixels,
            max_request_pixels=self.max_request_pixels,
        )
