"""An ASGI app served by uvicorn on a background thread, on a loopback port.

Used by the local stack (``wma analyze``/``wma demo`` without ``--gateway``), by the
tests (gateways and test-local upstreams on real ports) and by the benchmarks.
The socket is bound before the thread starts, so the port is known at once.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI
from wma_wire.serving import HTTP, LOOP


class StackError(RuntimeError):
    """A child of the stack did not start (its log tail is in the message)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GatewayThread:
    """A gateway app served by uvicorn on a thread, on a socket bound before start."""

    def __init__(self, app: FastAPI, port: int = 0, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        # log_config=None: uvicorn's records reach the root logger (and test captures).
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=5,
            loop=LOOP,
            http=HTTP,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self, timeout: float = 30.0) -> GatewayThread:
        self._thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                raise StackError("the gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)
        self._sock.close()
