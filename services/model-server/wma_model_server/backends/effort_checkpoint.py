"""Reading a DeepfakeBench/Effort checkpoint: format, architecture, SVD folding.

Accepts a bare state dict or a dict with ``state_dict`` and ``model_config``,
strips the DDP ``module.`` prefix, infers the CLIP ViT size from tensor shapes
and folds every SVD-residual linear (``weight_main + U diag(S) V``) into one
dense weight. Loading is ``weights_only`` (no pickle code execution) with exactly
the numpy globals that the trainer's metrics need allow-listed (``eer``/``auc`` are
``numpy.float64``): the scalar constructor, ``numpy.dtype`` and the float64,
float32 and int64 dtype classes. Any other global, and anything that does not fit
the architecture, is a :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import importlib
import logging
import math
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wma_model_server.exceptions import CheckpointError

__all__ = [
    "NUMPY_SAFE_GLOBALS",
    "EffortArch",
    "fold_backbone",
    "infer_arch",
    "is_svd_bookkeeping",
    "read_checkpoint",
]

log = logging.getLogger(__name__)
_LAYER = re.compile(r"^backbone\.encoder\.layers\.(\d+)\.")
_SVD_PARTS = ("U_residual", "S_residual", "V_residual")
_PATCH = "backbone.embeddings.patch_embedding.weight"
_POSITIONS = "backbone.embeddings.position_embedding.weight"
# Effort keeps the discarded top singular triplets of each attention linear for its
# orthogonality loss; inference (weight_main + residual) never reads them.
_SVD_BOOKKEEPING = re.compile(r"\.self_attn\.[a-z_]+\.(S_r|U_r|V_r)$")
# The two ways torch's weights-only unpickler names what it refused.
_UNSUPPORTED_GLOBAL = re.compile(
    r"GLOBAL (\S+) was not an allowed global|Can only build .* but got <class '([^']+)'>"
)


def _numpy_safe_globals() -> list[Callable[..., Any] | tuple[Callable[..., Any], str]]:
    """(object, pickled name) of the numpy globals a trainer checkpoint's metrics need.

    numpy 1.x pickles its scalar constructor as ``numpy.core.multiarray.scalar``,
    numpy 2.x as ``numpy._core.multiarray.scalar``: both names map to the one
    function (``numpy.core`` itself is not imported, it is deprecated in numpy 2).
    """
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        multiarray = importlib.import_module("numpy.core.multiarray")
    scalar = multiarray.scalar
    entries: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        (np.dtype, "numpy.dtype"),
    ]
    # A dtype is rebuilt by numpy.dtype(...) and then given its state (BUILD), which
    # the weights-only unpickler allows only for allow-listed types.
    for dtype_class in (np.dtypes.Float64DType, np.dtypes.Float32DType, np.dtypes.Int64DType):
        entries.append((dtype_class, f"numpy.dtypes.{dtype_class.__name__}"))
    return entries


NUMPY_SAFE_GLOBALS = tuple(entry[1] for entry in _numpy_safe_globals() if isinstance(entry, tuple))


def is_svd_bookkeeping(key: str) -> bool:
    """Whether ``key`` is one of Effort's ``S_r``/``U_r``/``V_r`` tensors (unused at inference)."""
    return _SVD_BOOKKEEPING.search(key) is not None


@dataclass(frozen=True)
class EffortArch:
    hidden: int
    layers: int
    heads: int
    mlp: int
    patch: int
    image: int
    arcface: bool
    arcface_s: float | None


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict without 'module.', model_config)`` of a checkpoint file.

    The trainer's metrics (``epoch``, ``auc``, ``eer``) are logged at INFO.
    """
    try:
        # A context, not add_safe_globals: the allow-list is widened for this load only.
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        unsupported = _UNSUPPORTED_GLOBAL.search(str(exc))
        if unsupported:
            raise CheckpointError(
                f"checkpoint {path} refers to the Python global "
                f"{unsupported.group(1) or unsupported.group(2)!r}, "
                "which a weights-only load does not allow (allowed beyond torch's own: "
                f"{', '.join(NUMPY_SAFE_GLOBALS)})"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is not a weights-only torch file: {exc}"
        ) from None
    config: Any = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state, config = obj["state_dict"], obj.get("model_config") or {}
    elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    else:
        raise CheckpointError(f"checkpoint {path} is neither a state dict nor has 'state_dict'")
    if not isinstance(config, dict):
        raise CheckpointError("checkpoint 'model_config' is not a dict")
    if state is not obj:
        metrics = {k: obj[k] for k in ("epoch", "auc", "eer") if k in obj}
        if metrics:
            shown = ", ".join(f"{k} {_plain(v)}" for k, v in metrics.items())
            log.info("checkpoint %s: %s", path.name, shown)
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint entry {key!r} is not a tensor")
        cleaned[str(key).removeprefix("module.")] = value
    return cleaned, config


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _need(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"checkpoint is missing {key!r}")
    return state[key]


def infer_arch(
    state: dict[str, torch.Tensor], config: dict[str, Any], num_heads: int | None = None
) -> EffortArch:
    """The backbone size from tensor shapes; heads from override, config, else hidden/64."""
    patch = _need(state, _PATCH)
    if patch.ndim != 4 or patch.shape[2] != patch.shape[3]:
        raise CheckpointError(f"{_PATCH!r} has shape {list(patch.shape)}, not [H, 3, P, P]")
    hidden, size = int(patch.shape[0]), int(patch.shape[2])
    positions = int(_need(state, _POSITIONS).shape[0])
    grid = math.isqrt(max(positions - 1, 0))
    if grid * grid != positions - 1 or grid == 0:
        raise CheckpointError(f"{_POSITIONS!r} has {positions} rows, not 1 + a square grid")
    layers = 1 + max((int(m.group(1)) for k in state if (m := _LAYER.match(k))), default=-1)
    if layers == 0:
        raise CheckpointError("checkpoint has no 'backbone.encoder.layers.*' tensors")
    mlp = int(_need(state, "backbone.encoder.layers.0.mlp.fc1.weight").shape[0])
    heads = num_heads or config.get("num_heads") or config.get("num_attention_heads")
    heads = int(heads) if heads else max(hidden // 64, 1)
    if hidden % heads:
        raise CheckpointError(f"hidden size {hidden} is not divisible by {heads} heads")
    arcface = "head.s" in state or bool(config.get("use_arcface_head", False))
    s = config.get("arcface_s")
    if "head.s" in state:
        s = float(state["head.s"].reshape(-1)[0])
    if arcface and s is None:
        raise CheckpointError("ArcFace head without 'head.s' or model_config.arcface_s")
    return EffortArch(hidden, layers, heads, mlp, size, grid * size, arcface, s)


def _fold(state: dict[str, torch.Tensor], base: str) -> torch.Tensor:
    main = state[base + "weight_main"]
    u, s, v = (_need(state, base + part) for part in _SVD_PARTS)
    rank = s.shape[0] if s.ndim == 1 else -1
    if u.shape != (main.shape[0], rank) or v.shape != (rank, main.shape[1]):
        raise CheckpointError(
            f"SVD residual of {base[:-1]!r} does not fit: weight_main {list(main.shape)}, "
            f"U {list(u.shape)}, S {list(s.shape)}, V {list(v.shape)}"
        )
    folded = main.double() + u.double() @ torch.diag(s.double()) @ v.double()
    return folded.to(torch.float32)


def fold_backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Backbone tensors with the ``backbone.`` prefix removed and SVD residuals folded.

    A linear given both densely (``.weight``) and as SVD parts (``.weight_main``) is
    refused; SVD parts without a ``weight_main`` are kept under their own names, so
    the caller reports them as unexpected instead of dropping them silently.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith("backbone."):
            continue
        name = key.removeprefix("backbone.")
        if key.endswith(".weight_main"):
            base = key.removesuffix("weight_main")
            if base + "weight" in state:
                raise CheckpointError(
                    f"checkpoint has both {base + 'weight'!r} and {key!r}; expected one"
                )
            out[name.removesuffix("weight_main") + "weight"] = _fold(state, base)
        elif not (key.endswith(_SVD_PARTS) and key.rsplit(".", 1)[0] + ".weight_main" in state):
            out[name] = value.to(torch.float32)
    return out
