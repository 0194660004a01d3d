"""The last line of both services: our own bug becomes a 500 JSON, and the connection lives.

Starlette's ``ServerErrorMiddleware`` answers an unhandled exception and then
re-raises it, so uvicorn closes the kept-alive connection without a
``Connection: close``: the client's next request on it fails with a reset. This
middleware sits inside it and answers ``{"error": "internal error"}`` itself,
without re-raising, so the connection stays usable. Only when a response had
already started (headers sent) is the exception re-raised: then closing the
connection is the only honest end. Details go to the log, never to the caller.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["InternalErrorMiddleware"]


class InternalErrorMiddleware:
    """Answer an unhandled exception as a 500 ``{"error": "internal error"}``, logged
    at ERROR with its traceback on ``logger``; never re-raised before a response."""

    def __init__(self, app: ASGIApp, logger: logging.Logger) -> None:
        self.app = app
        self.log = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            method, path = scope.get("method", "?"), scope.get("path", "?")
            self.log.error("%s %s -> 500: unexpected error", method, path, exc_info=exc)
            if started:
                raise
            await JSONResponse({"error": "internal error"}, status_code=500)(scope, receive, send)
