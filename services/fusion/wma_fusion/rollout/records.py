"""Comparison records: one JSON line per request on which both paths ran.

A record holds what is needed to compare the paths offline (verdicts, banners,
scores, latencies, errors, the degraded flag, config and calibrator hashes) and
nothing that identifies a person: participant and meeting ids are replaced by an
HMAC-SHA256 under a secret key read from the environment (unless the operator
opts into raw ids), and frames never appear. Lines go to a dedicated logger
and/or a rotating file written by a background thread, off the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import logging.handlers
import os
import queue
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wma_core import MemberStatus

from wma_fusion.rollout.config import RecordSink
from wma_fusion.rollout.legacy import LegacyResult

RECORD_KIND = "wma.rollout.comparison"
RECORD_LOGGER = "wma.rollout.records"
_log = logging.getLogger("wma.rollout")


@dataclass(frozen=True)
class PathOutcome:
    """What one path answered (or why it did not), in record form."""

    status: MemberStatus
    latency_ms: float
    verdict: str | None = None
    banner: str | None = None
    score: float | None = None
    interval: tuple[float, float] | None = None
    degraded: bool = False
    error: str | None = None

    def __post_init__(self) -> None:
        # Every record gives latencies to the microsecond, whichever path built it.
        object.__setattr__(self, "latency_ms", round(self.latency_ms, 3))
        # A status given by its wire value (tests, replays) is the same status.
        object.__setattr__(self, "status", MemberStatus(self.status))

    @property
    def answered(self) -> bool:
        return self.status.answered


def legacy_outcome(result: LegacyResult) -> PathOutcome:
    return PathOutcome(
        status=result.status,
        latency_ms=result.latency_ms,
        verdict=None if result.verdict is None else result.verdict.value,
        banner=None if result.banner is None else result.banner.value,
        score=result.mean_prob,
        error=result.error,
    )


class IdHasher:
    """Keyed hashing of participant and meeting ids (HMAC-SHA256, hex)."""

    def __init__(self, key: bytes, *, raw: bool = False) -> None:
        self._key = key
        self.raw = raw
        # A fingerprint of the key lets the report tell whether a key matches the records.
        self.key_id = hashlib.sha256(b"wma-key-id\0" + key).hexdigest()[:12]

    @classmethod
    def from_env(
        cls, env_name: str, environ: Mapping[str, str] | None = None, *, raw: bool = False
    ) -> IdHasher:
        value = (os.environ if environ is None else environ).get(env_name, "")
        if value:
            return cls(value.encode(), raw=raw)
        _log.warning(
            "%s is not set: comparison records use a random per-process hash key, so "
            "participant hashes will not correlate across restarts or replicas",
            env_name,
        )
        return cls(secrets.token_bytes(32), raw=raw)

    def digest(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def ids(self, name: str, value: str | None) -> dict[str, str | None]:
        """``{name: raw}`` when raw ids are on, else ``{name + "_hash": hmac}``."""
        if self.raw:
            return {name: value}
        return {f"{name}_hash": None if value is None else self.digest(value)}


def build_record(
    hasher: IdHasher,
    *,
    mode: str,
    served_by: str,
    participant_id: str,
    meeting_id: str | None,
    num_frames: int,
    legacy: PathOutcome,
    ensemble: PathOutcome,
    config_sha256: str | None,
    calibrators_sha256: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The comparison record of one request (a JSON-ready dict)."""
    when = (now or datetime.now(UTC)).isoformat(timespec="milliseconds")
    return {
        "kind": RECORD_KIND,
        "v": 1,
        "time": when,
        "mode": mode,
        "served_by": served_by,
        **hasher.ids("participant_id", participant_id),
        **hasher.ids("meeting_id", meeting_id),
        "hash_key_id": None if hasher.raw else hasher.key_id,
        "num_frames": num_frames,
        "legacy": asdict(legacy),
        "ensemble": asdict(ensemble),
        "config_sha256": config_sha256,
        "calibrators_sha256": calibrators_sha256,
    }


class RecordWriter:
    """Writes records to the configured sink; :meth:`close` flushes the file thread."""

    def __init__(
        self,
        sink: RecordSink,
        *,
        environ: Mapping[str, str] | None = None,
        hasher: IdHasher | None = None,
    ) -> None:
        """``hasher`` keeps a previous writer's ids comparable; by default one is
        built from ``sink.hash_key_env``."""
        self.sink = sink
        self.hasher = hasher or IdHasher.from_env(
            sink.hash_key_env, environ, raw=sink.raw_participant_ids
        )
        self._stream = logging.getLogger(RECORD_LOGGER) if sink.log else None
        if self._stream is not None and self._stream.level == logging.NOTSET:
            # Records are INFO lines; keep them even where the root logger is at WARNING.
            self._stream.setLevel(logging.INFO)
        self._file: logging.Logger | None = None
        self._listener: logging.handlers.QueueListener | None = None
        if sink.file:
            path = Path(sink.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=sink.max_bytes, backupCount=sink.backups, encoding="utf-8"
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
            q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
            self._listener = logging.handlers.QueueListener(q, handler)
            self._listener.start()
            # A private logger (not in the global registry): each app owns its own file.
            self._file = logging.Logger(f"{RECORD_LOGGER}.file", logging.INFO)
            self._file.propagate = False
            self._file.addHandler(logging.handlers.QueueHandler(q))

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), sort_keys=True)
        if self._stream is not None:
            self._stream.info(line)
        if self._file is not None:
            self._file.info(line)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            for handler in self._listener.handlers:
                handler.close()
            self._listener = None
            self._file = None
