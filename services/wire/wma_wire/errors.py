"""The one HTTP error base of both services: each error knows the status it means.

Each app maps :class:`HTTPError` to ``{"error": message, ...}`` in one place and
logs a client error (4xx) without a traceback. The gateway and the model server
derive their own errors from it; the shared checks (body cap, multipart, frames)
raise the three below, which both answer with the same status.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BadRequestError", "HTTPError", "LimitExceededError", "UnsupportedFormatError"]


class HTTPError(Exception):
    """Base of every error raised on purpose; ``status_code`` is the HTTP status.

    ``extra`` keys are added to the ``{"error": message}`` body.
    """

    status_code = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


class BadRequestError(HTTPError):
    """The request itself is wrong (missing field, malformed body, bad frame)."""

    status_code = 400


class LimitExceededError(BadRequestError):
    """A request is over a configured size or count limit (named in the message)."""

    status_code = 413


class UnsupportedFormatError(BadRequestError):
    """A body or frame of a media type that is not accepted (not multipart, not JPEG/PNG)."""

    status_code = 415
