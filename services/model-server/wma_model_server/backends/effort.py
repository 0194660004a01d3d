"""The Effort backend: CLIP ViT vision tower + Linear or ArcFace head, in PyTorch.

Builds a ``transformers`` ``CLIPVisionModel`` from a local config (nothing is
downloaded), loads the folded checkpoint into plain ``nn.Linear`` weights, and
scores ``softmax(logits)[:, 1]``. Preprocessing matches training: RGB, resize
to the model's image size (``area`` by default, like the old server), CLIP
mean/std. It runs in IEEE fp32 by default on every device, TF32 included off on
CUDA: the only precision that flipped no fused verdict in the precision check
(docs/benchmarks.md, "Precision"); bf16, fp16 and TF32 are selectable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModel

from wma_model_server.backends.effort_checkpoint import (
    EffortArch,
    fold_backbone,
    infer_arch,
    is_svd_bookkeeping,
    read_checkpoint,
)
from wma_model_server.exceptions import CheckpointError, DeviceError

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "EffortBackend",
    "EffortModel",
    "resolve_device",
    "select_dtype",
    "set_cuda_tf32",
]

log = logging.getLogger(__name__)
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
_INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}
# Older transformers saved position_ids (arange) with the weights; the model rebuilds it.
_KNOWN_BUFFERS = frozenset({"backbone.embeddings.position_ids"})
# tf32: fp32 tensors, matmuls/convolutions on TF32 tensor cores (CUDA only; fp32 on CPU).
_DTYPES = {
    "float32": torch.float32,
    "tf32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_device(device: str) -> torch.device:
    """The torch device, refused (naming it) when this host cannot provide it."""
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} requested but CUDA is not available "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda})"
            )
        index = resolved.index or 0
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    return resolved


def select_dtype(dtype: str) -> torch.dtype:
    """The tensors' dtype: ``auto`` is fp32 on every device (``tf32`` is fp32 too)."""
    return torch.float32 if dtype == "auto" else _DTYPES[dtype]


def set_cuda_tf32(dtype: str) -> bool:
    """Allow TF32 in CUDA matmuls and cuDNN convolutions iff ``dtype`` is ``tf32``.

    Process-wide (one model per process). Set both ways because cuDNN allows TF32
    convolutions by default: ``float32`` must mean IEEE fp32, as measured.
    """
    allowed = dtype == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed
    return allowed


def _report_unused(keys: Sequence[str]) -> None:
    """Each unused key once: Effort's own bookkeeping at DEBUG, anything else at WARNING."""
    bookkeeping = [k for k in keys if is_svd_bookkeeping(k)]
    buffers = [k for k in keys if k in _KNOWN_BUFFERS]
    other = [k for k in keys if k not in bookkeeping and k not in buffers]
    if bookkeeping or buffers:
        log.debug(
            "checkpoint keys not used at inference: %d SVD bookkeeping tensors "
            "(S_r/U_r/V_r, the discarded singular triplets the trainer's orthogonality "
            "loss reads): %s%s",
            len(bookkeeping),
            ", ".join(bookkeeping),
            f"; transformers buffers rebuilt by the model: {', '.join(buffers)}" if buffers else "",
        )
    if other:
        log.warning("checkpoint keys not used by the model: %s", ", ".join(other))


class EffortModel(torch.nn.Module):
    """Backbone + head with dense (folded) weights; ``forward`` returns fake probabilities."""

    def __init__(self, arch: EffortArch) -> None:
        super().__init__()
        config = CLIPVisionConfig(
            hidden_size=arch.hidden,
            intermediate_size=arch.mlp,
            num_hidden_layers=arch.layers,
            num_attention_heads=arch.heads,
            image_size=arch.image,
            patch_size=arch.patch,
            hidden_act="quick_gelu",
        )
        self.arch = arch
        self.backbone = CLIPVisionModel(config)
        self.head_weight = torch.nn.Parameter(torch.zeros(2, arch.hidden))
        self.head_bias = torch.nn.Parameter(torch.zeros(2))

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        expected = self.backbone.state_dict()
        folded = fold_backbone(state)
        for key, tensor in expected.items():
            if key not in folded:
                raise CheckpointError(f"checkpoint is missing 'backbone.{key}'")
            if folded[key].shape != tensor.shape:
                raise CheckpointError(
                    f"checkpoint tensor 'backbone.{key}' has shape {list(folded[key].shape)}, "
                    f"the architecture needs {list(tensor.shape)}"
                )
        unexpected = sorted(f"backbone.{k}" for k in folded.keys() - expected.keys())
        self.backbone.load_state_dict({k: folded[k] for k in expected})
        head: dict[str, tuple[int, ...]] = {"head.weight": (2, self.arch.hidden)}
        if not self.arch.arcface:
            head["head.bias"] = (2,)
        for key, shape in head.items():
            if key not in state:
                raise CheckpointError(f"checkpoint is missing {key!r}")
            if tuple(state[key].shape) != shape:
                raise CheckpointError(
                    f"checkpoint tensor {key!r} has shape {list(state[key].shape)}, "
                    f"the architecture needs {list(shape)}"
                )
        with torch.no_grad():
            self.head_weight.copy_(state["head.weight"])
            if not self.arch.arcface:
                self.head_bias.copy_(state["head.bias"])
        known = {"head.weight", "head.bias", "head.s"}
        unexpected += sorted(k for k in state if not k.startswith("backbone.") and k not in known)
        _report_unused(unexpected)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.backbone(pixel_values=pixels).pooler_output
        if self.arch.arcface:
            assert self.arch.arcface_s is not None
            cos = F.normalize(features.float()) @ F.normalize(self.head_weight.float()).T
            logits = self.arch.arcface_s * cos
        else:
            # The head runs in fp32 whatever the backbone dtype (bf16 logits lose ~3 digits).
            logits = F.linear(features.float(), self.head_weight.float(), self.head_bias.float())
        return torch.softmax(logits, dim=1)[:, 1]


class EffortBackend:
    kind = "effort"

    def __init__(
        self, model_id: str, model: EffortModel, device: str, dtype: str, interpolation: str
    ) -> None:
        self.model_id = model_id
        self.device = resolve_device(device)
        self.dtype = select_dtype(dtype)
        self.tf32 = set_cuda_tf32(dtype) if self.device.type == "cuda" else False
        self.model = model.to(self.device, self.dtype).eval()
        self.image_size = model.arch.image
        self.interpolation = _INTERPOLATION[interpolation]

    @classmethod
    def from_checkpoint(
        cls,
        model_id: str,
        path: Path,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        num_heads: int | None = None,
        interpolation: str = "area",
        cpu_threads: int | None = None,
    ) -> EffortBackend:
        if cpu_threads is not None:
            # Process-wide; one model per process. Fewer threads avoid OpenMP spin-wait
            # fighting the decode threads on small CPU hosts (see docs/benchmarks.md).
            torch.set_num_threads(cpu_threads)
        resolve_device(device)  # fail before the (large) checkpoint is read
        state, config = read_checkpoint(path)
        arch = infer_arch(state, config, num_heads)
        log.info("effort checkpoint %s: %s", path, arch)
        model = EffortModel(arch)
        model.load_checkpoint_state(state)
        backend = cls(model_id, model, device, dtype, interpolation)
        log.info(
            "effort model %s on %s in %s%s",
            model_id,
            backend.device,
            backend.dtype,
            " (TF32 matmuls)" if backend.tf32 else "",
        )
        return backend

    def prepare(self, frame: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
        size = self.image_size
        pixels: np.ndarray[Any, Any] = frame
        if frame.shape[:2] != (size, size):
            pixels = cv2.resize(frame, (size, size), interpolation=self.interpolation)
        # Channel by channel straight into the CHW float32 array the model takes: the
        # same IEEE operations as ((x / 255) - mean) / std on the HWC frame (same bits),
        # without its temporaries and the transposing copy (~8x faster at 224 px).
        out = np.empty((3, size, size), dtype=np.float32)
        for c in range(3):
            channel = out[c]
            np.divide(pixels[:, :, c], np.float32(255.0), out=channel, dtype=np.float32)
            np.subtract(channel, CLIP_MEAN[c], out=channel)
            np.divide(channel, CLIP_STD[c], out=channel)
        return out

    def predict(self, inputs: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        batch = torch.from_numpy(np.stack(inputs)).to(self.device, self.dtype)
        with torch.inference_mode():
            probs = self.model(batch)
        out: np.ndarray[Any, Any] = probs.float().cpu().numpy().astype(np.float32)
        return out

    def warmup(self) -> None:
        size = self.image_size
        self.predict([np.zeros((3, size, size), dtype=np.float32)] * 2)
