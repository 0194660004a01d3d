"""The ``rollout`` section of the gateway configuration."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator


class RolloutMode(StrEnum):
    LEGACY = "legacy"
    SHADOW = "shadow"
    CANARY = "canary"
    ENSEMBLE = "ensemble"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LegacyPath(_Strict):
    """The old single-model path: one legacy ``/check_frame_batch`` endpoint."""

    endpoint: HttpUrl
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    threshold: float = Field(default=0.75, gt=0, lt=1)
    margin: float = Field(default=0.05, ge=0, lt=1)

    @property
    def base_url(self) -> str:
        return str(self.endpoint).rstrip("/")


class RecordSink(_Strict):
    """Where comparison records go: the log stream and/or a rotating file."""

    log: bool = True
    file: str | None = None
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    backups: int = Field(default=5, ge=0, le=100)
    # The key for the keyed participant hash is a secret, read from this env var.
    hash_key_env: str = Field(default="WMA_RECORD_HASH_KEY", min_length=1)
    raw_participant_ids: bool = False


class RolloutConfig(_Strict):
    mode: RolloutMode = RolloutMode.ENSEMBLE
    canary_percent: float = Field(default=10.0, ge=0, le=100)
    canary_salt: str = Field(default="wma-canary", min_length=1, max_length=128)
    # In canary mode, also run the path that does not serve, for comparison.
    shadow_other_path: bool = True
    legacy: LegacyPath | None = None
    records: RecordSink = RecordSink()

    @model_validator(mode="after")
    def _legacy_needed(self) -> RolloutConfig:
        if self.mode is not RolloutMode.ENSEMBLE and self.legacy is None:
            raise ValueError(f"rollout.legacy is required when rollout.mode is {self.mode.value!r}")
        return self
