"""Canary assignment and routing: share, stickiness across processes, path plans."""

from __future__ import annotations

import subprocess
import sys

import pytest
from wma_fusion.rollout.canary import canary_bucket, in_canary
from wma_fusion.rollout.config import LegacyPath, RolloutConfig, RolloutMode
from wma_fusion.rollout.router import ServedBy, route

IDS = [f"participant-{i:05d}" for i in range(10_000)]
LEGACY = LegacyPath(endpoint="http://127.0.0.1:9005")  # type: ignore[arg-type]


@pytest.mark.parametrize("percent", [1.0, 10.0, 37.5, 50.0, 90.0])
def test_canary_share_over_10000_ids_is_within_one_point(percent: float) -> None:
    share = 100.0 * sum(in_canary(pid, percent, "wma-canary") for pid in IDS) / len(IDS)
    assert abs(share - percent) <= 1.0


def test_canary_bounds_are_none_and_everyone() -> None:
    assert not any(in_canary(pid, 0.0, "s") for pid in IDS[:500])
    assert all(in_canary(pid, 100.0, "s") for pid in IDS[:500])


def test_raising_the_percent_keeps_everyone_already_in_the_canary() -> None:
    at_10 = {pid for pid in IDS if in_canary(pid, 10.0, "s")}
    at_20 = {pid for pid in IDS if in_canary(pid, 20.0, "s")}
    assert at_10 < at_20


def test_salt_changes_the_assignment() -> None:
    a = [in_canary(pid, 50.0, "salt-a") for pid in IDS[:1000]]
    b = [in_canary(pid, 50.0, "salt-b") for pid in IDS[:1000]]
    assert a != b


def test_bucket_is_the_documented_sha256_formula() -> None:
    # Pinned so other replicas (or other languages) can reproduce the assignment:
    # int(sha256(b"wma-canary\x00alice")[:8], big) / 2**64 * 100.
    assert canary_bucket("alice", "wma-canary") == pytest.approx(71.35239235274189, abs=1e-12)


def test_assignment_is_the_same_in_a_fresh_process_with_another_hash_seed() -> None:
    sample = IDS[:300]
    code = (
        "import sys; from wma_fusion.rollout.canary import in_canary\n"
        "ids = sys.stdin.read().split()\n"
        "print(''.join('1' if in_canary(i, 30.0, 'wma-canary') else '0' for i in ids))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=" ".join(sample),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout.strip()
    here = "".join("1" if in_canary(i, 30.0, "wma-canary") else "0" for i in sample)
    assert out == here


def _config(mode: RolloutMode, **kw: object) -> RolloutConfig:
    return RolloutConfig(mode=mode, legacy=LEGACY, **kw)  # type: ignore[arg-type]


def test_ensemble_mode_runs_and_serves_the_ensemble_only() -> None:
    r = route(RolloutConfig(), "p")
    assert (r.served_by, r.run_legacy, r.run_ensemble, r.compared) == (
        ServedBy.ENSEMBLE,
        False,
        True,
        False,
    )


def test_legacy_mode_runs_and_serves_legacy_only() -> None:
    r = route(_config(RolloutMode.LEGACY), "p")
    assert (r.served_by, r.run_legacy, r.run_ensemble) == (ServedBy.LEGACY, True, False)


def test_shadow_mode_runs_both_and_serves_legacy() -> None:
    r = route(_config(RolloutMode.SHADOW), "p")
    assert (r.served_by, r.compared, r.shadow) == (ServedBy.LEGACY, True, ServedBy.ENSEMBLE)


def test_canary_mode_serves_by_bucket_and_shadows_the_other_path() -> None:
    cfg = _config(RolloutMode.CANARY, canary_percent=50.0)
    for pid in IDS[:200]:
        r = route(cfg, pid)
        expected = ServedBy.ENSEMBLE if in_canary(pid, 50.0, "wma-canary") else ServedBy.LEGACY
        assert r.served_by is expected and r.compared


def test_canary_without_shadowing_runs_only_the_serving_path() -> None:
    cfg = _config(RolloutMode.CANARY, canary_percent=50.0, shadow_other_path=False)
    plans = {route(cfg, pid) for pid in IDS[:200]}
    assert {(p.served_by, p.run_legacy, p.run_ensemble) for p in plans} == {
        (ServedBy.ENSEMBLE, False, True),
        (ServedBy.LEGACY, True, False),
    }


def test_non_ensemble_modes_require_a_legacy_endpoint() -> None:
    with pytest.raises(ValueError, match="rollout.legacy is required"):
        RolloutConfig(mode=RolloutMode.CANARY)
