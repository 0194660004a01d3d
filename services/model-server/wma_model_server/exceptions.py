"""The model server's exception tree: each error knows the HTTP status it means.

``app`` maps :class:`ModelServerError` to ``{"error": message}`` in one place;
:class:`~wma_model_server.protocol.ProtocolError` (a ``ValueError``) maps to 400.
"""

from __future__ import annotations


class ModelServerError(Exception):
    """Base class; ``status_code`` is the HTTP status the error is answered with."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(ModelServerError):
    status_code = 400


class ModelNotFoundError(ModelServerError):
    status_code = 404


class LimitExceededError(ModelServerError):
    """A request is over a configured size or count limit (named in the message)."""

    status_code = 413


class UnsupportedFormatError(ModelServerError):
    """A frame is not JPEG or PNG (by declared type or by magic bytes)."""

    status_code = 415


class OverloadedError(ModelServerError):
    """The batching queue is full; the caller should retry after ``retry_after_s``."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReadyError(ModelServerError):
    status_code = 503


class InferenceError(ModelServerError):
    """The model gave an unusable answer (e.g. NaN): our or the operator's problem, a 500."""


class DeviceError(ModelServerError):
    """The configured device (e.g. ``cuda``) is not available on this host."""

    status_code = 503


class CheckpointError(ModelServerError):
    """A checkpoint cannot be loaded into the Effort architecture (the key is named)."""

    status_code = 503
