"""The production ViT-L/14 layout, device checks and dtype choice, all checked on a CPU.

The full-size model is built on PyTorch's ``meta`` device: every tensor has its
real shape and no memory, so the loader's shape checks run in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from wma_model_server.backends.effort import (
    EffortModel,
    resolve_device,
    select_dtype,
    set_cuda_tf32,
)
from wma_model_server.backends.effort_checkpoint import infer_arch
from wma_model_server.backends.effort_random import (
    TINY,
    VIT_L14,
    random_effort_state,
    save_random_checkpoint,
)
from wma_model_server.exceptions import CheckpointError, DeviceError

pytestmark = pytest.mark.anyio


def test_full_size_checkpoint_has_the_vit_l14_shapes_and_loads_into_the_architecture() -> None:
    state = random_effort_state(VIT_L14, device="meta")
    assert state["backbone.embeddings.patch_embedding.weight"].shape == (1024, 3, 14, 14)
    assert state["backbone.embeddings.position_embedding.weight"].shape == (257, 1024)
    assert state["backbone.encoder.layers.23.self_attn.q_proj.U_residual"].shape == (1024, 1)
    assert "backbone.encoder.layers.24.mlp.fc1.weight" not in state
    arch = infer_arch(state, {"num_heads": 16})
    assert (arch.hidden, arch.layers, arch.heads, arch.mlp) == (1024, 24, 16, 4096)
    assert (arch.patch, arch.image, arch.arcface) == (14, 224, False)
    assert infer_arch(state, {}).heads == 16  # hidden / 64 without a config
    with torch.device("meta"):
        model = EffortModel(arch)
    model.load_checkpoint_state(state)  # every key present, every shape right
    params = sum(p.numel() for p in model.backbone.parameters())
    assert 300e6 < params < 306e6  # the CLIP ViT-L/14 vision tower has ~303 M


def test_full_size_layout_with_a_wrong_shape_is_refused_naming_the_key() -> None:
    state = random_effort_state(VIT_L14, device="meta")
    state["backbone.encoder.layers.7.mlp.fc2.weight"] = torch.empty(1024, 3072, device="meta")
    with torch.device("meta"):
        model = EffortModel(infer_arch(state, {}))
    with pytest.raises(CheckpointError, match=r"layers\.7\.mlp\.fc2\.weight.*\[1024, 4096\]"):
        model.load_checkpoint_state(state)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("auto", torch.float32),  # the only precision that flipped no verdict
        ("float32", torch.float32),
        ("tf32", torch.float32),  # fp32 tensors; TF32 is a CUDA matmul mode
        ("bfloat16", torch.bfloat16),
        ("float16", torch.float16),
    ],
)
def test_compute_dtype_is_fp32_by_default_and_reduced_precision_is_selectable(
    dtype: str, expected: torch.dtype
) -> None:
    assert select_dtype(dtype) is expected


@pytest.mark.parametrize(
    ("dtype", "allowed"), [("auto", False), ("float32", False), ("tf32", True)]
)
def test_cuda_tf32_is_on_only_when_asked_for_convolutions_included(
    dtype: str, allowed: bool
) -> None:
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        assert set_cuda_tf32(dtype) is allowed
        assert torch.backends.cuda.matmul.allow_tf32 is allowed
        assert torch.backends.cudnn.allow_tf32 is allowed  # cuDNN's own default is True
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a host without CUDA")
def test_cuda_on_a_host_without_cuda_is_refused_naming_the_device() -> None:
    with pytest.raises(DeviceError, match="'cuda:1' requested but CUDA is not available"):
        resolve_device("cuda:1")
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a host without CUDA")
async def test_server_asked_for_cuda_without_one_stays_unready_saying_why(
    serve: Any, tmp_path: Path
) -> None:
    path = tmp_path / "tiny.pth"
    save_random_checkpoint(path, TINY)
    async with serve(backend="effort", checkpoint=path, device="cuda") as client:
        live = await client.get("/v2/health/live")
        ready = await client.get("/v2/health/ready")
    assert live.status_code == 200
    assert ready.status_code == 503 and "CUDA is not available" in ready.json()["error"]


@pytest.mark.parametrize("arcface", [False, True])
async def test_random_benchmark_checkpoint_is_served(
    serve: Any, png: Any, form: Any, tmp_path: Path, arcface: bool
) -> None:
    path = tmp_path / "tiny.pth"
    save_random_checkpoint(path, TINY, arcface=arcface)
    async with serve(backend="effort", checkpoint=path) as client:
        r = await client.post("/check_frame_batch", files=form([png(10, 28), png(240, 40)]))
    assert r.status_code == 200, r.text
    probs = r.json()["probs"]
    assert len(probs) == 2 and all(0.0 <= p <= 1.0 for p in probs)
