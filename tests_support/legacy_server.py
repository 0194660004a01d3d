"""A legacy ``/check_frame_batch`` server on a loopback thread whose behaviour a test sets.

``failing`` answers 500; ``hold`` keeps each request until ``release`` is set (or
``hold_s`` passes), so a test can have requests in flight at a moment it chooses.
Serves as a legacy-protocol ensemble member or as the rollout's legacy model.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

from fastapi import FastAPI, Request, Response
from wma_local.stack import GatewayThread


class LegacyServer:
    """Answers ``{"pred_label": "REAL", "confidence": prob, "probs": [prob]}``."""

    def __init__(self, *, prob: float = 0.1, hold: bool = False, hold_s: float = 20.0) -> None:
        self.failing = False
        self.hold = hold
        self.release = threading.Event()
        self.calls = 0
        self.held = 0
        app = FastAPI()

        @app.post("/check_frame_batch")
        async def check(request: Request) -> Response:
            await request.body()
            self.calls += 1
            if self.failing:
                return Response(b'{"error": "boom"}', 500, media_type="application/json")
            if self.hold:
                self.held += 1
                end = time.monotonic() + hold_s
                while not self.release.is_set() and time.monotonic() < end:
                    await asyncio.sleep(0.02)
            body = {"pred_label": "REAL", "confidence": prob, "probs": [prob]}
            return Response(json.dumps(body), media_type="application/json")

        self.app = app  # in-process use: gateway_harness.Hosts({"legacy": server.app})
        self.url = ""  # set by start()
        self._server: GatewayThread | None = None

    def start(self) -> LegacyServer:
        """Serve on a loopback thread; :attr:`url` is then its address."""
        self._server = GatewayThread(self.app).start()
        self.url = self._server.url
        return self

    def stop(self) -> None:
        """Let every held request go, then stop serving."""
        self.release.set()
        if self._server is not None:
            self._server.stop()
