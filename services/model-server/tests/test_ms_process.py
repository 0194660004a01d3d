"""End to end against a real `wma model-server` process on a loopback port."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_processes import WMA, free_port, start_model_server
from wma_wire.protocol import decode_infer_response, encode_infer_request

pytestmark = pytest.mark.slow
MODEL_ID = "9rfa62j1"


def _command(*args: str) -> list[str]:
    return [*WMA, "model-server", *args]


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    args = ["--model-id", MODEL_ID, "--backend", "mock", "--max-batch", "8"]
    log = tmp_path_factory.mktemp("ms") / "server.log"  # a file, not a pipe that could fill up
    proc, url = start_model_server(log, *args)
    try:
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server(started: tuple[str, Path]) -> str:
    return started[0]


def test_the_process_says_which_model_it_serves(started: tuple[str, Path]) -> None:
    url, log = started
    with httpx.Client(base_url=url, timeout=30) as client:
        meta = client.get(f"/v2/models/{MODEL_ID}").json()
        other = client.get("/v2/models/1mjgo9w1")
    assert meta["name"] == MODEL_ID
    assert other.status_code == 404 and MODEL_ID in other.json()["error"]
    assert f"model {MODEL_ID} ready (mock backend)" in log.read_text()


def test_old_client_request_against_the_real_process(server: str, png: Any) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        r = client.post(
            "/check_frame_batch",
            params={
                "model_type": "custom",
                "threshold": 0.75,
                "debug": "false",
                "yolo_conf_threshold": 0.8,
            },
            files=[("files", (f"{i}.jpg", png(v), "image/png")) for i, v in enumerate((51, 255))],
        )
        assert r.status_code == 200
        assert r.json()["probs"] == pytest.approx([0.2, 1.0], abs=1e-6)
    # (0.2 + 1.0) / 2 = 0.6 is not above the old client's threshold 0.75
    assert r.json()["pred_label"] == "REAL"
    assert r.json()["confidence"] == pytest.approx(0.6, abs=1e-6)


def test_bad_inputs_get_4xx_and_the_process_keeps_serving(server: str, png: Any) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        empty = client.post("/check_frame_batch", files={"other": ("x", b"x")})
        wrong = client.post("/check_frame_batch", files=[("files", ("a", b"hi", "text/plain"))])
        corrupt = client.post(
            "/check_frame_batch",
            files=[
                ("files", ("a", png(200, 32)[:-30], "image/png")),
                ("files", ("b", png(51), "image/png")),
            ],
        )
        many = client.post(
            "/check_frame_batch",
            files=[("files", (str(i), png(1), "image/png")) for i in range(65)],
        )
        body, headers = encode_infer_request("e2e", [png(153)])
        infer = client.post(f"/v2/models/{MODEL_ID}/infer", content=body, headers=headers)
        assert client.get("/v2/health/live").status_code == 200
    assert empty.status_code == 400
    assert wrong.status_code == 415
    assert corrupt.status_code == 200 and corrupt.json()["probs"] == pytest.approx([0.2])
    assert many.status_code == 413 and "max_files=64" in many.json()["error"]
    reply = decode_infer_response(infer.content, infer.headers)
    assert reply.statuses == ["ok"] and reply.probs[0] == pytest.approx(0.6, abs=1e-6)


def test_cli_refuses_a_checkpoint_that_does_not_fit(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "bad.pth"
    torch.save({"backbone.embeddings.patch_embedding.weight": torch.zeros(32, 3, 14, 14)}, path)
    done = subprocess.run(
        _command(
            "--model-id",
            "x1",
            "--backend",
            "effort",
            "--checkpoint",
            str(path),
            "--port",
            str(free_port()),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "backbone.embeddings.position_embedding.weight" in done.stderr


def test_cli_refuses_cuda_on_a_host_without_it(tmp_path: Path) -> None:
    import torch
    from wma_model_server.backends.effort_random import TINY, save_random_checkpoint

    if torch.cuda.is_available():
        pytest.skip("checks a host without CUDA")
    path = tmp_path / "tiny.pth"
    save_random_checkpoint(path, TINY)
    done = subprocess.run(
        _command("--model-id", "x1", "--backend", "effort", "--checkpoint", str(path))
        + ["--device", "cuda", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "device 'cuda' requested but CUDA is not available" in done.stderr
