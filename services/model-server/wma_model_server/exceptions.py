"""The model server's errors: each knows the HTTP status it means.

They derive from the shared :class:`~wma_wire.errors.HTTPError` (re-exported here
as :class:`ModelServerError`), which ``app`` maps to ``{"error": message}`` in one
place; the shared checks' 400, 413 and 415 are :mod:`wma_wire.errors`' own.
:class:`~wma_wire.tensors.ProtocolError` (a ``ValueError``) maps to 400.
"""

from __future__ import annotations

from wma_wire.errors import (
    BadRequestError,
    HTTPError,
    LimitExceededError,
    UnsupportedFormatError,
)

__all__ = [
    "BadRequestError",
    "CheckpointError",
    "DeviceError",
    "InferenceError",
    "LimitExceededError",
    "ModelNotFoundError",
    "ModelServerError",
    "NotReadyError",
    "OverloadedError",
    "UnsupportedFormatError",
]

ModelServerError = HTTPError  # the base the app maps, shared with the gateway


class ModelNotFoundError(HTTPError):
    status_code = 404


class OverloadedError(HTTPError):
    """The batching queue is full; the caller should retry after ``retry_after_s``."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReadyError(HTTPError):
    status_code = 503


class InferenceError(HTTPError):
    """The model gave an unusable answer (e.g. NaN): our or the operator's problem, a 500."""


class DeviceError(HTTPError):
    """The configured device (e.g. ``cuda``) is not available on this host."""

    status_code = 503


class CheckpointError(HTTPError):
    """A checkpoint cannot be loaded into the Effort architecture (the key is named)."""

    status_code = 503
