"""Comparison records: keyed hashes instead of ids, sinks, rotation, metrics."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from wma_fusion.rollout.config import RecordSink
from wma_fusion.rollout.metrics import RolloutMetrics
from wma_fusion.rollout.records import (
    RECORD_LOGGER,
    IdHasher,
    PathOutcome,
    RecordWriter,
    build_record,
)

KEY_ENV = {"WMA_RECORD_HASH_KEY": "s3cret"}
LEG = PathOutcome("ok", 12.5, "REAL", "GREEN", 0.31)
ENS = PathOutcome("ok", 80.0, "FAKE", "RED", 0.9991, degraded=True)


def _record(hasher: IdHasher, pid: str = "alice@example.com", meeting: str | None = "m-1") -> dict:  # type: ignore[type-arg]
    return build_record(
        hasher,
        mode="shadow",
        served_by="legacy",
        participant_id=pid,
        meeting_id=meeting,
        num_frames=10,
        legacy=LEG,
        ensemble=ENS,
        config_sha256="c" * 64,
        calibrators_sha256="b" * 64,
    )


def test_record_holds_keyed_hashes_never_the_raw_ids() -> None:
    hasher = IdHasher.from_env("WMA_RECORD_HASH_KEY", KEY_ENV)
    rec = _record(hasher)
    expected = hmac.new(b"s3cret", b"alice@example.com", hashlib.sha256).hexdigest()
    assert rec["participant_id_hash"] == expected
    assert rec["meeting_id_hash"] == hmac.new(b"s3cret", b"m-1", hashlib.sha256).hexdigest()
    text = json.dumps(rec)
    assert "alice" not in text and '"m-1"' not in text
    assert rec["legacy"]["verdict"] == "REAL" and rec["ensemble"]["banner"] == "RED"
    assert rec["ensemble"]["degraded"] is True
    assert rec["config_sha256"] == "c" * 64 and rec["calibrators_sha256"] == "b" * 64


def test_same_key_gives_the_same_hash_across_writers() -> None:
    a = IdHasher.from_env("WMA_RECORD_HASH_KEY", KEY_ENV)
    b = IdHasher.from_env("WMA_RECORD_HASH_KEY", KEY_ENV)
    assert _record(a)["participant_id_hash"] == _record(b)["participant_id_hash"]
    assert a.key_id == b.key_id


def test_missing_key_warns_and_hashes_do_not_correlate(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wma.rollout"):
        a = IdHasher.from_env("WMA_RECORD_HASH_KEY", {})
        b = IdHasher.from_env("WMA_RECORD_HASH_KEY", {})
    assert any(
        r.levelno == logging.WARNING and "WMA_RECORD_HASH_KEY" in r.getMessage()
        for r in caplog.records
    )
    assert _record(a)["participant_id_hash"] != _record(b)["participant_id_hash"]


def test_raw_ids_only_when_opted_in() -> None:
    rec = _record(IdHasher(b"k", raw=True), meeting=None)
    assert rec["participant_id"] == "alice@example.com" and rec["meeting_id"] is None
    assert "participant_id_hash" not in rec and rec["hash_key_id"] is None


def test_file_sink_writes_one_json_line_per_record(tmp_path: Path) -> None:
    sink = RecordSink(log=False, file=str(tmp_path / "rec" / "records.jsonl"))
    writer = RecordWriter(sink, environ=KEY_ENV)
    for i in range(3):
        writer.write(_record(writer.hasher, pid=f"user-{i}"))
    writer.close()
    lines = (tmp_path / "rec" / "records.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["wma.rollout.comparison"] * 3
    assert "user-" not in "".join(lines)


def test_file_sink_rotates_at_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    writer = RecordWriter(
        RecordSink(log=False, file=str(path), max_bytes=2000, backups=2), environ=KEY_ENV
    )
    for i in range(40):
        writer.write(_record(writer.hasher, pid=f"user-{i}"))
    writer.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["records.jsonl", "records.jsonl.1", "records.jsonl.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())


def test_log_sink_emits_on_the_dedicated_logger(caplog: pytest.LogCaptureFixture) -> None:
    writer = RecordWriter(RecordSink(log=True), environ=KEY_ENV)
    with caplog.at_level(logging.INFO, logger=RECORD_LOGGER):
        writer.write(_record(writer.hasher))
    writer.close()
    (line,) = [r.getMessage() for r in caplog.records if r.name == RECORD_LOGGER]
    assert json.loads(line)["served_by"] == "legacy"


def test_agreement_counter_counts_banner_pairs_with_failures_as_error() -> None:
    registry = CollectorRegistry()
    metrics = RolloutMetrics(registry)
    metrics.observe_comparison("GREEN", "GREEN")
    metrics.observe_comparison("GREEN", "GREEN")
    metrics.observe_comparison(None, "RED")

    def value(leg: str, ens: str) -> float | None:
        return registry.get_sample_value(
            "wma_rollout_agreement_total", {"legacy_banner": leg, "ensemble_banner": ens}
        )

    assert value("GREEN", "GREEN") == 2.0
    assert value("ERROR", "RED") == 1.0
    assert value("RED", "RED") is None


def test_every_record_latency_is_rounded_to_the_microsecond() -> None:
    failed = PathOutcome("error", 5.689003000043158, error="no ensemble member answered")
    record = build_record(
        IdHasher(b"k"),
        mode="shadow",
        served_by="legacy",
        participant_id="p",
        meeting_id=None,
        num_frames=1,
        legacy=LEG,
        ensemble=failed,
        config_sha256=None,
        calibrators_sha256=None,
    )
    assert json.dumps(record["ensemble"]["latency_ms"]) == "5.689"


def test_a_shadow_task_from_before_a_records_reload_writes_to_the_current_sink(
    tmp_path: Path,
) -> None:
    import asyncio

    import yaml
    from wma_core import Banner, MemberStatus, Verdict
    from wma_fusion.app import create_app
    from wma_fusion.inputs import AnalyzeInput
    from wma_fusion.rollout.config import RolloutMode
    from wma_fusion.rollout.legacy import LegacyResult
    from wma_fusion.rollout.router import Route, ServedBy
    from wma_fusion.rollout.serve import _compare
    from wma_local.stack import DEFAULT_BUNDLE

    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    doc = {
        "models": [{"id": "9rfa62j1", "endpoint": "http://127.0.0.1:9"}],
        "calibrators": {"path": str(DEFAULT_BUNDLE)},
        "reload": {"enabled": False},
        "rollout": {
            "mode": "shadow",
            "legacy": {"endpoint": "http://127.0.0.1:10"},
            "records": {"log": False, "file": str(first)},
        },
    }
    config = tmp_path / "g.yaml"
    config.write_text(yaml.safe_dump(doc))
    gw = create_app(config, env={}).state.gateway  # no hash key: a random one per process
    runtime, holder = gw.rollout, gw.holder
    before = holder.state
    doc["rollout"]["records"]["file"] = str(second)
    config.write_text(yaml.safe_dump(doc))
    assert holder.reload_if_changed() is True

    req = AnalyzeInput(frames=[b"x"], participant_id="alice", meeting_id=None)
    plan = Route(RolloutMode.SHADOW, ServedBy.LEGACY, run_legacy=True, run_ensemble=True)
    leg = LegacyResult(MemberStatus.OK, 1.0, 0.75, 0.05, (0.1,), 0.1, Banner.GREEN, Verdict.REAL)

    async def paths() -> tuple[asyncio.Task[LegacyResult], asyncio.Task[PathOutcome]]:
        async def legacy() -> LegacyResult:
            return leg

        async def ensemble() -> PathOutcome:
            return PathOutcome("error", 1.0, error="down")

        return asyncio.create_task(legacy()), asyncio.create_task(ensemble())

    async def go() -> None:
        # a request that started after the reload, then the shadow task of one before it
        await _compare(runtime, holder.state, req, plan, await paths(), 0.0)  # type: ignore[arg-type]
        await _compare(runtime, before, req, plan, await paths(), 0.0)  # type: ignore[arg-type]

    asyncio.run(go())
    runtime.close()
    assert not first.exists() or first.read_text() == ""
    lines = [json.loads(line) for line in second.read_text().splitlines()]
    assert len(lines) == 2
    assert lines[0]["participant_id_hash"] == lines[1]["participant_id_hash"]
