"""Random-weight Effort checkpoints with real key names and shapes, for benchmarks.

A checkpoint written here has the DeepfakeBench/Effort layout (SVD-residual
attention linears, Linear or ArcFace head; ``state_dict``, ``model_config`` and
numpy metrics, as the trainer saves them) and loads through the same loader as
a trained one. :data:`VIT_L14` is the
production size (CLIP ViT-L/14: 224 px, patch 14, hidden 1024, 24 layers,
16 heads, MLP 4096; Effort keeps rank 1023 in ``weight_main``, so the residual
has rank 1); :data:`TINY` is a toy that runs in milliseconds on a CPU. On
``device="meta"`` only shapes are built (no memory, no time), which is how the
tests check the full-size layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["TINY", "VIT_L14", "EffortShape", "random_effort_state", "save_random_checkpoint"]

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


@dataclass(frozen=True)
class EffortShape:
    hidden: int
    layers: int
    heads: int
    mlp: int
    patch: int
    image: int
    rank: int


TINY = EffortShape(hidden=32, layers=2, heads=2, mlp=128, patch=14, image=28, rank=4)
VIT_L14 = EffortShape(hidden=1024, layers=24, heads=16, mlp=4096, patch=14, image=224, rank=1)


def random_effort_state(
    shape: EffortShape, *, arcface: bool = False, seed: int = 0, device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """A state dict in the Effort layout; N(0, 0.02) weights, unit LayerNorms."""
    generator = torch.Generator().manual_seed(seed)
    meta = torch.device(device).type == "meta"

    def rnd(*dims: int) -> torch.Tensor:
        if meta:
            return torch.empty(*dims, device="meta")
        return (torch.randn(*dims, generator=generator) * 0.02).to(device)

    def norm(prefix: str) -> dict[str, torch.Tensor]:
        ones = torch.ones(shape.hidden, device=device)
        return {f"{prefix}.weight": ones, f"{prefix}.bias": torch.zeros_like(ones)}

    h, grid = shape.hidden, shape.image // shape.patch
    state = {
        "backbone.embeddings.class_embedding": rnd(h),
        "backbone.embeddings.patch_embedding.weight": rnd(h, 3, shape.patch, shape.patch),
        "backbone.embeddings.position_embedding.weight": rnd(grid * grid + 1, h),
        **norm("backbone.pre_layrnorm"),
        **norm("backbone.post_layernorm"),
    }
    for i in range(shape.layers):
        layer = f"backbone.encoder.layers.{i}"
        for proj in _PROJECTIONS:
            p = f"{layer}.self_attn.{proj}"
            state |= {f"{p}.weight_main": rnd(h, h), f"{p}.bias": rnd(h)}
            state |= {f"{p}.U_residual": rnd(h, shape.rank), f"{p}.S_residual": rnd(shape.rank)}
            state[f"{p}.V_residual"] = rnd(shape.rank, h)
        state |= {**norm(f"{layer}.layer_norm1"), **norm(f"{layer}.layer_norm2")}
        state |= {
            f"{layer}.mlp.fc1.weight": rnd(shape.mlp, h),
            f"{layer}.mlp.fc1.bias": rnd(shape.mlp),
        }
        state |= {f"{layer}.mlp.fc2.weight": rnd(h, shape.mlp), f"{layer}.mlp.fc2.bias": rnd(h)}
    state["head.weight"] = rnd(2, h)
    if arcface:
        state["head.s"] = torch.tensor(30.0, device=device)
    else:
        state["head.bias"] = rnd(2)
    return state


def save_random_checkpoint(
    path: Path, shape: EffortShape, *, arcface: bool = False, seed: int = 0
) -> None:
    """Write a random checkpoint as the trainer writes one: ``state_dict``,
    ``model_config`` and the run's metrics, ``auc``/``eer`` as ``numpy.float64``."""
    config = {
        "use_arcface_head": arcface,
        "arcface_s": 30.0,
        "arcface_m": 0.35,
        "num_heads": shape.heads,
        "rank": shape.rank,
    }
    state = random_effort_state(shape, arcface=arcface, seed=seed)
    metrics = {"epoch": 0, "auc": np.float64(0.5), "eer": np.float64(0.5)}
    torch.save(
        {"state_dict": state, "model_config": config, **metrics, "model_checksum": "random"},
        path,
    )
