"""The gateway's errors; each says which HTTP status it means.

They derive from the shared :class:`~wma_wire.errors.HTTPError` (named
:class:`GatewayError` here); the input checks shared with the model server raise
:mod:`wma_wire.errors`' 400, 413 and 415, named here as the gateway names them.
Errors are mapped to ``{"error": ...}`` responses in exactly one place
(:func:`wma_fusion.app.create_app`); a client error is logged without a traceback.
"""

from __future__ import annotations

from wma_wire.errors import (
    BadRequestError,
    HTTPError,
    LimitExceededError,
    UnsupportedFormatError,
)

__all__ = [
    "ConfigError",
    "EnsembleUnavailable",
    "GatewayError",
    "InputError",
    "LegacyUnavailable",
    "PayloadTooLarge",
    "UnsupportedMedia",
]

GatewayError = HTTPError  # base of every error the gateway raises on purpose
# The request itself is wrong (missing field, bad participant id, bad frame): 400;
# over a size or count limit: 413; not multipart, or a frame not JPEG/PNG: 415.
InputError = BadRequestError
PayloadTooLarge = LimitExceededError
UnsupportedMedia = UnsupportedFormatError


class EnsembleUnavailable(HTTPError):
    """No ensemble member gave an answer (every one failed): 503 with the statuses."""

    status_code = 503


class LegacyUnavailable(HTTPError):
    """The legacy model failed while it serves (rollout legacy/shadow/canary): 503."""

    status_code = 503


class ConfigError(HTTPError):
    """A configuration that is refused; ``field`` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
