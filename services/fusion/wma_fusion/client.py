"""The client SDK for the meeting server: :class:`FusionClient` and :class:`ParticipantTracker`.

``FusionClient.process_frames`` returns what the old in-process four-model client
returned (``verdict``, ``confidence``, ``fusion_score``, ``calibrated_scores``,
``predictions``, ``participant_name``, ``num_frames``, ``thresholds``) plus every
field of the gateway's answer, so it replaces the old client in the meeting server.
:class:`ParticipantTracker` is the only per-participant state: it turns answers
into banner updates with hysteresis (escalate at once, calm down slowly).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import httpx
from wma_core import BANNER_RANK, Banner
from wma_wire.auth import bearer_header
from wma_wire.frames import sniff_format
from wma_wire.http1 import Http1Transport
from wma_wire.protocol import encode_infer_request

# The gateway answers within its fan-out deadline (4.5 s by default) plus overhead.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=2.0)


class FusionClientError(Exception):
    """The gateway did not give an answer (4xx/5xx); ``body`` holds its reply."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        super().__init__(f"gateway answered {status_code}: {body.get('error', body)}")
        self.status_code = status_code
        self.body = body


def _content_type(frame: bytes) -> str:
    """The frame's type by its magic bytes (the model server's check); else JPEG."""
    return f"image/{sniff_format(frame) or 'jpeg'}"


class FusionClient:
    """Async client of ``POST /v1/analyze``; one connection pool per client."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        token: str | None = None,
        wire: Literal["oip", "multipart"] = "oip",
    ) -> None:
        # wire: how frames travel, an OIP v2 infer body (binary extension; the default)
        # or the multipart form (files + participant_id) of older gateways
        self._wire = wire
        # token: the gateway's WMA_GATEWAY_TOKEN, sent as "Authorization: Bearer <token>"
        headers = bearer_header(token) if token is not None else None
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            transport=transport or Http1Transport(),  # https:// goes to httpx's own
            headers=headers,
        )

    async def __aenter__(self) -> FusionClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def process_frames(
        self,
        frames: list[bytes],
        participant_id: str,
        participant_name: str | None = None,
        *,
        meeting_id: str | None = None,
    ) -> dict[str, Any]:
        """Analyze one batch of face crops; raises :class:`FusionClientError` without an answer.

        An empty ``frames`` is refused here with :class:`ValueError`: with no file part
        httpx would send a form-encoded body, which the gateway can only refuse (415).
        """
        if not frames:
            raise ValueError("process_frames needs at least one frame (JPEG or PNG bytes)")
        ids = {"participant_id": participant_id}
        if meeting_id is not None:
            ids["meeting_id"] = meeting_id
        if self._wire == "multipart":
            files = [("files", (f"frame{i}", f, _content_type(f))) for i, f in enumerate(frames)]
            response = await self._http.post("/v1/analyze", data=ids, files=files)
        else:  # the frames as one OIP infer body: no multipart to build or parse
            infer, headers = encode_infer_request(participant_id, frames, binary=True)
            response = await self._http.post(
                "/v1/analyze", content=infer, headers=headers, params=ids
            )
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if response.status_code != 200:
            raise FusionClientError(response.status_code, body)
        models: Mapping[str, Mapping[str, Any]] = body.get("models", {})
        return {
            **body,
            "participant_name": participant_name,
            "calibrated_scores": {mid: m.get("calibrated") for mid, m in models.items()},
            "predictions": {mid: m.get("aggregated") for mid, m in models.items()},
        }


@dataclass(frozen=True)
class BannerUpdate:
    participant_id: str
    banner: Banner
    changed: bool
    verdict: str


@dataclass
class _Track:
    banner: Banner
    last_seen: float
    calmer: list[Banner]


class ParticipantTracker:
    """Banner hysteresis per participant.

    A more severe banner is shown at once; a calmer one only after ``calm_after``
    consecutive calmer answers (then the most severe of them). ``NO_FACE``
    answers change nothing. A participant silent for ``idle_ttl_s`` is forgotten.
    """

    def __init__(
        self,
        calm_after: int = 3,
        idle_ttl_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if calm_after < 1 or idle_ttl_s <= 0:
            raise ValueError("calm_after must be >= 1 and idle_ttl_s > 0")
        self.calm_after = calm_after
        self.idle_ttl_s = idle_ttl_s
        self._clock = clock
        self._tracks: dict[str, _Track] = {}

    def banner(self, participant_id: str) -> Banner:
        self.forget_idle()
        track = self._tracks.get(participant_id)
        return track.banner if track else Banner.NONE

    def forget_idle(self) -> list[str]:
        now = self._clock()
        gone = [p for p, t in self._tracks.items() if now - t.last_seen >= self.idle_ttl_s]
        for participant_id in gone:
            del self._tracks[participant_id]
        return gone

    def update(self, participant_id: str, result: Mapping[str, Any]) -> BannerUpdate | None:
        """Feed one answer; returns the banner to show, or None for a NO_FACE answer."""
        self.forget_idle()
        now = self._clock()
        track = self._tracks.setdefault(participant_id, _Track(Banner.NONE, now, []))
        track.last_seen = now
        verdict = str(result.get("verdict", ""))
        if verdict == "NO_FACE":
            return None
        new = Banner(result["banner"])
        old = track.banner
        if BANNER_RANK[new] >= BANNER_RANK[old]:
            track.banner, track.calmer = new, []
        else:
            track.calmer.append(new)
            if len(track.calmer) >= self.calm_after:
                track.banner = max(track.calmer, key=BANNER_RANK.__getitem__)
                track.calmer = []
        return BannerUpdate(participant_id, track.banner, track.banner != old, verdict)

    def __len__(self) -> int:
        return len(self._tracks)
