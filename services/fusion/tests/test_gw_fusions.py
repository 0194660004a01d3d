"""``wma up --calibrators B`` serves the bundle's own fusion rule (real processes).

A sum-of-logits and a stacked bundle (the mock bundle's calibrators, other
fusions): every verdict's fused score is the formula the bundle records,
recomputed here from the answer's calibrated scores; with a member killed the
answer is the interval rule's, the missing member at its output range's ends.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gateway_harness import post_frames
from live_processes import WMA, children_of, http_ok, reap, wait_for
from wma_core import FusionRule, Thresholds
from wma_core.bundle import load_bundle, write_bundle
from wma_local.samples import grey_frame
from wma_local.stack import free_port

pytestmark = pytest.mark.slow
MOCK = Path(__file__).resolve().parents[3] / "services" / "local" / "wma_local" / "mock.json"
EPS = 1e-6


def logit(p: float) -> float:
    q = min(max(p, EPS), 1.0 - EPS)
    return math.log(q / (1.0 - q))


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def sum_logits(cal: dict[str, float]) -> float:
    return sigmoid(sum(logit(p) for p in cal.values()))


WEIGHTS = {"9rfa62j1": 0.4, "1mjgo9w1": 0.9, "dfsesrgu": 0.0, "4vtny88m": 1.3}
BIAS = -0.75


def stacked(cal: dict[str, float]) -> float:
    return sigmoid(BIAS + sum(WEIGHTS[m] * logit(p) for m, p in cal.items()))


# (rule, its formula, the member to kill): the stacked bundle gives dfsesrgu weight 0,
# so without it the interval is one point and the verdict is still decided.
Formula = Callable[[dict[str, float]], float]
CASES: list[tuple[FusionRule, Formula, str]] = [
    (FusionRule("sum_logits"), sum_logits, "4vtny88m"),
    (FusionRule("stacked", weights=WEIGHTS, bias=BIAS), stacked, "dfsesrgu"),
]
Served = tuple[str, subprocess.Popen[str], Formula, str]


def verdict(lo: float, hi: float, t: Thresholds) -> str:
    return "FAKE" if lo > t.t_high else "REAL" if hi < t.t_low else "UNCERTAIN"


@pytest.fixture(params=CASES, ids=[c[0].kind for c in CASES])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    rule, formula, victim = request.param
    mock = load_bundle(MOCK)
    bundle = type(mock)(Thresholds(0.2, 0.8), mock.models, {"test": rule.kind}, fusion=rule)
    path = tmp_path / f"{rule.kind}.json"
    write_bundle(bundle, path)
    port = free_port()
    proc = subprocess.Popen(
        [*WMA, "up", "--port", str(port), "--calibrators", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ok(f"{url}/readyz"), "gateway not ready", 90, 0.1)
        yield url, proc, formula, victim
    finally:
        proc.send_signal(signal.SIGTERM)
        reap(proc, 30)
        if proc.stdout:
            proc.stdout.close()


def answer(url: str, level: int) -> dict[str, object]:
    """The 200 answer to ten frames of one grey level."""
    response = post_frames(url, [grey_frame(level)] * 10, participant_id="p")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_served_verdicts_follow_the_bundles_fusion_and_the_interval_rule(served: Served) -> None:
    url, proc, formula, victim = served
    thresholds = Thresholds(0.2, 0.8)
    seen = set()
    for level in (20, 90, 120, 140, 160, 230):
        body = answer(url, level)
        models = body["models"]
        assert isinstance(models, dict)
        cal = {m: float(entry["calibrated"]) for m, entry in models.items()}
        want = formula(cal)
        assert body["fusion_score"] == pytest.approx(want, rel=1e-12, abs=1e-15)
        assert body["verdict"] == verdict(want, want, thresholds)
        seen.add(body["verdict"])
    assert {"REAL", "FAKE"} <= seen

    (pid,) = [p for p, c in children_of(proc.pid).items() if f"--model-id {victim} " in c]
    os.kill(pid, signal.SIGKILL)

    def missing() -> bool:
        models = answer(url, 230)["models"]
        assert isinstance(models, dict)
        return bool(models[victim]["status"] != "ok")

    wait_for(missing, f"{victim} still answers", 60, 0.2)
    decided = set()
    for level in (20, 230):
        body = answer(url, level)
        models = body["models"]
        assert isinstance(models, dict)
        present = {m: float(e["calibrated"]) for m, e in models.items() if m != victim}
        lo, hi = formula(present | {victim: 0.0}), formula(present | {victim: 1.0})
        assert body["fusion_score"] is None and body["degraded"] is True
        assert body["fusion_interval"] == pytest.approx([lo, hi], rel=1e-12, abs=1e-15)
        assert body["verdict"] == verdict(lo, hi, thresholds)
        decided.add(body["verdict"])
    assert decided == {"REAL", "FAKE"}  # three members outvote the missing one's range
