"""The lean HTTP/1.1 transport against real servers on loopback: a uvicorn app
(uvloop + httptools, as the services are served) and raw asyncio servers for the
edge cases, each test under asyncio's own event loop and under uvloop's."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from wma_wire.http1 import Http1Transport
from wma_wire.serving import HTTP, LOOP

pytestmark = pytest.mark.timeout(30)

Runner = Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


def _pattern(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


# -- the uvicorn app --------------------------------------------------------------


async def _echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, headers={"x-sha256": hashlib.sha256(body).hexdigest()})


async def _big(request: Request) -> Response:
    return Response(_pattern(int(request.query_params["n"])))


async def _chunked(request: Request) -> StreamingResponse:
    n, parts = int(request.query_params["n"]), int(request.query_params["parts"])
    data = _pattern(n)
    step = -(-n // parts)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, n, step):
            yield data[start : start + step]

    return StreamingResponse(pieces())


async def _peer(request: Request) -> Response:
    assert request.client is not None
    return PlainTextResponse(str(request.client.port))


async def _close(request: Request) -> Response:
    assert request.client is not None
    return PlainTextResponse(str(request.client.port), headers={"connection": "close"})


async def _headers(request: Request) -> Response:
    response = JSONResponse(
        {
            "x-a": request.headers.getlist("x-a"),
            "host": request.headers.get("host"),
            "path": request.url.path,
            "query": request.url.query,
        }
    )
    response.raw_headers += [(b"x-b", b"one"), (b"x-b", b"two")]
    return response


APP = Starlette(
    routes=[
        Route("/echo", _echo, methods=["POST"]),
        Route("/big", _big),
        Route("/chunked", _chunked),
        Route("/peer", _peer),
        Route("/close", _close),
        Route("/headers/{rest:path}", _headers),
    ]
)


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(APP, log_config=None, log_level="warning", loop=LOOP, http=HTTP)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    end = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < end, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Runs a test's coroutine on a fresh event loop of the parametrized kind."""
    uv = request.param == "uvloop"

    def runner(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        async def checked() -> Any:
            assert isinstance(asyncio.get_running_loop(), uvloop.Loop) is uv
            return await make()

        factory = uvloop.new_event_loop if uv else None
        with asyncio.Runner(loop_factory=factory) as loop_runner:
            return loop_runner.run(checked())

    return runner


def _client(transport: Http1Transport | None = None, read: float = 10.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport or Http1Transport(), timeout=httpx.Timeout(10.0, read=read)
    )


# -- raw servers ------------------------------------------------------------------


class RawServer:
    """An ``asyncio.start_server`` on loopback: ``handler(reader, writer, index)`` per
    connection (index: 0 for the first accepted); records what it saw."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.connections = 0
        self.requests: list[bytes] = []  # request heads, in arrival order
        self.peers: list[int] = []  # the client port of each connection
        self.eof = 0  # connections the client closed
        self.got_request = asyncio.Event()
        self.closed_by_client = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()
        for writer in self._writers:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        self.peers.append(writer.get_extra_info("peername")[1])
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await self._handler(reader, writer, index)
        writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request (head and Content-Length body), or None at the client's EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            self.eof += 1
            self.closed_by_client.set()
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        self.requests.append(head)
        self.got_request.set()
        return head + body

    async def wait_for_eof(self, reader: asyncio.StreamReader) -> None:
        if await reader.read() == b"":
            self.eof += 1
            self.closed_by_client.set()


def _reply(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
    return head + b"".join(line + b"\r\n" for line in extra) + b"\r\n" + body


# -- the uvicorn app: bodies, headers, keep-alive ----------------------------------


def test_a_large_post_is_echoed_byte_for_byte(run: Runner, app_url: str) -> None:
    body = hashlib.sha256(b"seed").digest() * (1_500_000 // 32)  # 1.5 MB

    async def go() -> None:
        async with _client() as client:
            response = await client.post(f"{app_url}/echo", content=body)
        assert response.status_code == 200
        assert response.headers["x-sha256"] == hashlib.sha256(body).hexdigest()
        assert response.content == body
        assert response.http_version == "HTTP/1.1"

    run(go)


def test_large_replies_with_a_length_and_chunked(run: Runner, app_url: str) -> None:
    n = 2_000_003

    async def go() -> None:
        async with _client() as client:
            sized = await client.get(f"{app_url}/big", params={"n": n})
            chunked = await client.get(f"{app_url}/chunked", params={"n": n, "parts": 7})
            empty = await client.get(f"{app_url}/big", params={"n": 0})
        assert sized.headers["content-length"] == str(n)
        assert sized.content == _pattern(n)
        assert chunked.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in chunked.headers
        assert chunked.content == _pattern(n)
        assert empty.status_code == 200 and empty.content == b""

    run(go)


def test_headers_path_query_and_repeated_headers_go_both_ways(run: Runner, app_url: str) -> None:
    async def go() -> None:
        async with _client() as client:
            response = await client.get(
                f"{app_url}/headers/a%20b/c",
                params={"q": "1 2", "r": "é"},
                headers=[("x-a", "first"), ("x-a", "second")],
            )
        assert response.status_code == 200
        seen = response.json()
        assert seen["x-a"] == ["first", "second"]
        assert seen["host"] == app_url.removeprefix("http://")
        assert seen["path"] == "/headers/a b/c"
        assert seen["query"] == "q=1+2&r=%C3%A9"
        assert response.headers.get_list("x-b") == ["one", "two"]

    run(go)


def test_sequential_requests_reuse_one_connection(run: Runner, app_url: str) -> None:
    async def go() -> None:
        async with _client() as client:
            ports = [(await client.get(f"{app_url}/peer")).text for _ in range(5)]
            await client.post(f"{app_url}/echo", content=b"x" * 300_000)
            ports.append((await client.get(f"{app_url}/peer")).text)
        assert len(set(ports)) == 1, ports

    run(go)


def test_a_connection_close_reply_is_not_reused(run: Runner, app_url: str) -> None:
    async def go() -> None:
        async with _client() as client:
            before = (await client.get(f"{app_url}/peer")).text
            closed = await client.get(f"{app_url}/close")
            after = (await client.get(f"{app_url}/peer")).text
            again = (await client.get(f"{app_url}/peer")).text
        assert closed.headers["connection"] == "close"
        assert closed.text == before  # the kept-alive connection, then closed
        assert after != before
        assert again == after

    run(go)


def test_a_head_request_ends_at_the_headers(run: Runner, app_url: str) -> None:
    async def go() -> None:
        async with _client(read=3.0) as client:
            head = await client.head(f"{app_url}/big", params={"n": 1000})
            get = await client.get(f"{app_url}/big", params={"n": 10})
        assert head.status_code == 200
        assert head.headers["content-length"] == "1000"
        assert head.content == b""
        assert get.content == _pattern(10)

    run(go)


# -- what goes to httpx's own transport --------------------------------------------


def test_a_streamed_upload_without_length_goes_to_httpx_and_arrives_whole(
    run: Runner, app_url: str
) -> None:
    parts = [_pattern(400_000), b"middle", _pattern(700_001)]

    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            await asyncio.sleep(0)
            yield part

    async def go() -> None:
        async with _client() as client:
            response = await client.post(f"{app_url}/echo", content=body())
            plain = await client.post(f"{app_url}/echo", content=b"sized")
        whole = b"".join(parts)
        assert response.headers["x-sha256"] == hashlib.sha256(whole).hexdigest()
        assert response.content == whole
        # httpcore's replies carry their network stream; the lean transport's do not
        assert "network_stream" in response.extensions
        assert "network_stream" not in plain.extensions

    run(go)


def test_https_goes_to_httpx_own_transport(run: Runner, app_url: str) -> None:
    # a TLS handshake against the plain-HTTP server fails: httpx's transport made it
    # (the lean one would have sent plain HTTP and got a 200)
    async def go() -> None:
        async with _client() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(app_url.replace("http://", "https://") + "/peer")

    run(go)


# -- raw servers: endings, failures, retries ---------------------------------------


def test_a_reply_without_length_ends_at_the_close(run: Runner) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"the close")
        await writer.drain()

    server = RawServer(handler)

    async def go() -> None:
        async with server, _client() as client:
            first = await client.get(f"{server.url}/a")
            second = await client.get(f"{server.url}/b")
        assert first.status_code == 200 and first.content == b"until the close"
        assert second.content == b"until the close"
        assert server.connections == 2  # the ended connection is not reused

    run(go)


def test_a_server_closing_mid_reply_is_a_protocol_error(run: Runner) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        if i == 0:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly")
        await writer.drain()

    server = RawServer(handler)

    async def go() -> None:
        async with server, _client() as client:
            for _ in range(2):
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get(server.url)
        assert server.connections == 2 and len(server.requests) == 2  # never resent

    run(go)


def test_a_fresh_connection_closed_before_any_reply_is_not_retried(run: Runner) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)

    server = RawServer(handler)

    async def go() -> None:
        async with server, _client() as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(server.url)
        assert server.connections == 1 and len(server.requests) == 1

    run(go)


def test_a_garbage_reply_is_a_protocol_error(run: Runner) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await server.wait_for_eof(reader)

    server = RawServer(handler)

    async def go() -> None:
        async with server, _client() as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(server.url)
            await asyncio.wait_for(server.closed_by_client.wait(), 5)

    run(go)


def test_an_idle_connection_the_server_closed_is_replaced(run: Runner) -> None:
    # the server answers one request per connection, then closes (no Connection: close)
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(_reply(b"%d" % i))
        await writer.drain()

    server = RawServer(handler)

    async def go() -> None:
        async with server, _client() as client:
            first = await client.get(server.url)
            await asyncio.sleep(0.1)  # the close reaches the client
            second = await client.get(server.url)
        assert (first.text, second.text) == ("0", "1")
        assert len(server.requests) == 2

    run(go)


def test_a_request_on_a_connection_the_server_drops_is_sent_once_more(run: Runner) -> None:
    # the server's idle timeout fires as the request goes out: it reads the request on
    # the kept-alive connection and closes without a byte of reply
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(_reply(b"%d" % i))
        await writer.drain()
        if i == 0:
            await server.read_request(reader)
            return
        while await server.read_request(reader) is not None:
            writer.write(_reply(b"again"))
            await writer.drain()

    server = RawServer(handler)

    async def go() -> None:
        async with server, _client() as client:
            first = await client.get(f"{server.url}/one")
            second = await client.get(f"{server.url}/two")
        assert (first.text, second.text) == ("0", "1")
        assert server.connections == 2
        assert [head.split(b" ")[1] for head in server.requests] == [b"/one", b"/two", b"/two"]

    run(go)


def test_a_reused_connection_closed_mid_reply_is_not_retried(run: Runner) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        writer.write(_reply(b"ok"))
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npart")
        await writer.drain()

    server = RawServer(handler)

    async def go() -> None:
        async with server, _client() as client:
            assert (await client.get(server.url)).text == "ok"
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(server.url)
        assert server.connections == 1 and len(server.requests) == 2

    run(go)


def test_a_refused_connection_is_a_connect_error(run: Runner) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused

        async def go() -> None:
            async with _client() as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get(f"http://127.0.0.1:{port}/")

        run(go)


def test_a_full_accept_queue_is_a_connect_timeout(run: Runner) -> None:
    # loopback's only way to leave a SYN unanswered: a listener whose backlog is full
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            filler = socket.socket()
            fillers.append(filler)
            filler.settimeout(0.3)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.skip("the accept queue never filled")

        async def go() -> None:
            client = httpx.AsyncClient(
                transport=Http1Transport(), timeout=httpx.Timeout(10.0, connect=0.3)
            )
            async with client:
                started = time.monotonic()
                with pytest.raises(httpx.ConnectTimeout):
                    await client.get(f"http://127.0.0.1:{port}/")
                assert time.monotonic() - started < 5

        run(go)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_server_that_never_answers_is_a_read_timeout(run: Runner) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        await server.wait_for_eof(reader)

    server = RawServer(handler)

    async def go() -> None:
        async with server, _client(read=0.3) as client:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await client.get(server.url)
            assert time.monotonic() - started < 5
            # the connection is dropped, never reused
            await asyncio.wait_for(server.closed_by_client.wait(), 5)

    run(go)


def test_a_request_cancelled_mid_reply_drops_its_connection(run: Runner) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        await server.read_request(reader)
        if i == 0:
            writer.write(_reply(b"first"))
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
            await server.wait_for_eof(reader)
            return
        writer.write(_reply(b"fresh"))
        await server.wait_for_eof(reader)

    server = RawServer(handler)

    async def go() -> None:
        async with server, _client() as client:
            assert (await client.get(server.url)).text == "first"
            server.got_request.clear()
            task = asyncio.create_task(client.get(server.url))
            await asyncio.wait_for(server.got_request.wait(), 5)
            await asyncio.sleep(0.05)  # the half reply is in
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(server.closed_by_client.wait(), 5)
            assert (await client.get(server.url)).text == "fresh"
        assert server.connections == 2
        assert server.peers[0] != server.peers[1]

    run(go)


def test_idle_connections_are_capped_and_closed_by_aclose(run: Runner) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        while await server.read_request(reader) is not None:
            await all_in.wait()
            writer.write(_reply(b"%d" % i))
            await writer.drain()

    server = RawServer(handler)
    all_in = asyncio.Event()

    async def go() -> None:
        nonlocal all_in
        all_in = asyncio.Event()  # of this test's loop
        transport = Http1Transport(max_idle=2)
        async with server, _client(transport) as client:

            async def when_three_arrived() -> None:
                while len(server.requests) < 3:
                    await asyncio.sleep(0.01)
                all_in.set()

            replies = await asyncio.gather(
                *(client.get(server.url) for _ in range(3)), when_three_arrived()
            )
            assert sorted(r.text for r in replies[:3]) == ["0", "1", "2"]
            # three connections in use at once, two kept idle: one closed at once
            await asyncio.wait_for(_until(lambda: server.eof == 1), 5)
            reused = [(await client.get(server.url)).text for _ in range(2)]
            assert server.connections == 3 and len(set(reused)) == 1
            await transport.aclose()
            await asyncio.wait_for(_until(lambda: server.eof == 3), 5)

    run(go)


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)
