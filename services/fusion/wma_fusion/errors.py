"""The gateway's one exception tree; each error says which HTTP status it means.

Errors are mapped to ``{"error": ...}`` responses in exactly one place
(:func:`wma_fusion.app.create_app`); a client error is logged without a traceback.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    status_code = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


class InputError(GatewayError):
    """The request itself is wrong (missing field, bad participant id, bad frame)."""

    status_code = 400


class PayloadTooLarge(InputError):
    status_code = 413


class UnsupportedMedia(InputError):
    status_code = 415


class EnsembleUnavailable(GatewayError):
    """No ensemble member gave an answer (every one failed): 503 with the statuses."""

    status_code = 503


class LegacyUnavailable(GatewayError):
    """The legacy model failed while it serves (rollout legacy/shadow/canary): 503."""

    status_code = 503


class ConfigError(GatewayError):
    """A configuration that is refused; ``field`` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
