"""A lean HTTP/1.1 transport for ``httpx``: kept-alive connections on asyncio
protocols, replies parsed by ``httptools`` (the parser uvicorn serves with).

The gateway sends every analyze request to four members: 2 MB of frames through
``httpcore``'s generic connection machinery cost it about a third of its CPU
(docs/benchmarks.md). :class:`Http1Transport` plugs in under the same
``httpx.AsyncClient`` (auth, timeouts, redirects and errors keep httpx's API) and
does the one thing the member calls need: ``http://`` requests with a body read into
memory, written with one ``write``, and replies with ``Content-Length``, chunked
bodies or bodies that end at the close, on a pool of idle connections per host.
Anything else (``https://``, a proxy, a streamed upload, ``HEAD``) goes to httpx's
own transport.

Errors are httpx's: :class:`httpx.ConnectError` / :class:`httpx.ConnectTimeout`
when no connection is made, :class:`httpx.ReadTimeout` when no complete reply
comes in time, :class:`httpx.RemoteProtocolError` for a reply that is not HTTP or
a connection closed mid-reply. A request whose reused connection was closed by the
server before any reply byte (an idle connection it timed out) is sent once more
on a new connection, as RFC 9112 9.3.1 allows; the callers' requests (scoring,
probes) have no side effects.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

import httptools
import httpx

__all__ = ["Http1Transport"]

_Key = tuple[str, int]


class _Reply:
    """One reply as the parser reads it."""

    __slots__ = ("status", "headers", "chunks", "done", "keep_alive")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.done = False
        self.keep_alive = False


class _Connection(asyncio.Protocol):
    """One kept-alive connection: at most one request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.received = False  # a byte of the current reply came in
        self._reply: _Reply | None = None
        self._parser: Any = None
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reply = self._reply
        if reply is not None and not reply.done:
            if exc is None and reply.status and not _framed(reply.headers):
                # a reply without Content-Length or chunks ends with the connection
                # (httptools' parser has no call for that end: it is told here)
                reply.done = True
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_result(None)
            else:
                self._fail(httpx.RemoteProtocolError("connection closed before the reply ended"))

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # nothing asked: the server speaks out of turn
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed reply: {exc}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._reply is not None
        self._reply.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._reply is not None and self._parser is not None
        self._reply.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        assert self._reply is not None
        self._reply.chunks.append(body)

    def on_message_complete(self) -> None:
        assert self._reply is not None and self._parser is not None
        self._reply.done = True
        self._reply.keep_alive = bool(self._parser.should_keep_alive())
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        self._error = error
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def exchange(self, head: bytes, body: bytes, timeout: float | None) -> _Reply:
        """Send one request and read its whole reply."""
        assert self.transport is not None
        reply = self._reply = _Reply()
        self._parser = httptools.HttpResponseParser(self)
        self._waiter = self._loop.create_future()
        self._error = None
        self.received = False
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError:
            self.abort()
            raise httpx.ReadTimeout(f"no complete reply within {timeout:.2f}s") from None
        except BaseException:  # cancelled mid-reply: the connection cannot be reused
            self.abort()
            raise
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error
        self._reply = None
        self._parser = None
        return reply

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _framed(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a reply's headers say where its body ends (else: at the close)."""
    for name, value in headers:
        name = name.lower()
        if name == b"content-length":
            return True
        if name == b"transfer-encoding" and value.rstrip().lower().endswith(b"chunked"):
            return True
    return False


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None]:
    timeout: dict[str, float | None] = request.extensions.get("timeout", {})
    return timeout.get("connect"), timeout.get("read")


class Http1Transport(httpx.AsyncBaseTransport):
    """``http://`` requests over a pool of kept-alive connections per host; at most
    ``max_idle`` idle connections are kept per host (connections in use are not
    capped: the callers bound their own concurrency)."""

    def __init__(self, *, max_idle: int = 64) -> None:
        self._max_idle = max_idle
        self._idle: dict[_Key, deque[_Connection]] = {}
        self._fallback: httpx.AsyncHTTPTransport | None = None
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if (
            url.scheme != "http"
            or self._closed
            or "transfer-encoding" in request.headers
            or request.method == "HEAD"  # its reply's Content-Length has no body after it
        ):
            return await self._other().handle_async_request(request)
        key = (url.host, url.port or 80)
        body = await request.aread()
        head = self._head(request)
        connect_timeout, read_timeout = _timeouts(request)
        conn, reused = self._take(key), True
        if conn is None:
            conn, reused = await self._connect(key, connect_timeout), False
        try:
            reply = await conn.exchange(head, body, read_timeout)
        except httpx.RemoteProtocolError:
            if not (reused and not conn.received):
                raise
            # the server closed an idle connection as the request went out: once more
            conn = await self._connect(key, connect_timeout)
            reply = await conn.exchange(head, body, read_timeout)
        if reply.keep_alive and not conn.closed:
            self._put(key, conn)
        else:
            conn.abort()
        return httpx.Response(
            reply.status,
            headers=reply.headers,
            # a stream, not content=: httpx would add a Content-Length the server did not send
            stream=httpx.ByteStream(b"".join(reply.chunks)),
            extensions={"http_version": b"HTTP/1.1"},
        )

    @staticmethod
    def _head(request: httpx.Request) -> bytes:
        target = request.url.raw_path
        lines = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            lines += (name, b": ", value, b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def _take(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have timed out
            if not conn.closed:
                return conn
        return None

    def _put(self, key: _Key, conn: _Connection) -> None:
        idle = self._idle.setdefault(key, deque())
        idle.append(conn)
        while len(idle) > self._max_idle:
            idle.popleft().abort()

    async def _connect(self, key: _Key, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        host, port = key
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(lambda: _Connection(loop), host, port)
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"no connection to {host}:{port} within {timeout}s"
            ) from None
        except OSError as exc:
            raise httpx.ConnectError(f"{host}:{port}: {exc.strerror or exc}") from None
        return conn

    def _other(self) -> httpx.AsyncHTTPTransport:
        if self._fallback is None:
            self._fallback = httpx.AsyncHTTPTransport()
        return self._fallback

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().abort()
        self._idle.clear()
        if self._fallback is not None:
            await self._fallback.aclose()
