"""The Effort backend serves tiny random checkpoints exactly like a plain PyTorch forward.

The reference below is written independently of the loader: it reads the raw
checkpoint tensors and computes the CLIP ViT forward by hand, applying each
SVD-residual weight (weight_main + U diag(S) V) at forward time.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.anyio
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
PROJ = ("q_proj", "k_proj", "v_proj", "out_proj")


def make_state(
    hidden: int = 32,
    layers: int = 2,
    mlp: int = 64,
    patch: int = 14,
    image: int = 28,
    rank: int = 4,
    arcface: bool = False,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    def norm(prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": 1 + rnd(hidden, scale=0.1), f"{prefix}.bias": rnd(hidden)}

    grid = image // patch
    s: dict[str, torch.Tensor] = {
        "backbone.embeddings.class_embedding": rnd(hidden),
        "backbone.embeddings.patch_embedding.weight": rnd(hidden, 3, patch, patch, scale=0.05),
        "backbone.embeddings.position_embedding.weight": rnd(grid * grid + 1, hidden),
        **norm("backbone.pre_layrnorm"),
        **norm("backbone.post_layernorm"),
    }
    for i in range(layers):
        p = f"backbone.encoder.layers.{i}"
        for proj in PROJ:
            s |= {
                f"{p}.self_attn.{proj}.weight_main": rnd(hidden, hidden),
                f"{p}.self_attn.{proj}.bias": rnd(hidden),
                f"{p}.self_attn.{proj}.U_residual": rnd(hidden, rank),
                f"{p}.self_attn.{proj}.S_residual": rnd(rank).abs(),
                f"{p}.self_attn.{proj}.V_residual": rnd(rank, hidden),
            }
        s |= {**norm(f"{p}.layer_norm1"), **norm(f"{p}.layer_norm2")}
        s |= {f"{p}.mlp.fc1.weight": rnd(mlp, hidden), f"{p}.mlp.fc1.bias": rnd(mlp)}
        s |= {f"{p}.mlp.fc2.weight": rnd(hidden, mlp), f"{p}.mlp.fc2.bias": rnd(hidden)}
    s["head.weight"] = rnd(2, hidden, scale=1.0)
    if arcface:
        s["head.s"] = torch.tensor(8.0)
    else:
        s["head.bias"] = rnd(2)
    return s


def reference_probs(
    s: dict[str, torch.Tensor], frames: list[np.ndarray[Any, Any]], heads: int, image: int = 28
) -> np.ndarray[Any, Any]:
    rows = []
    for f in frames:
        if f.shape[:2] != (image, image):
            f = cv2.resize(f, (image, image), interpolation=cv2.INTER_AREA)
        rows.append(((f.astype(np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1))
    px = torch.from_numpy(np.stack(rows)).double()
    d = {k: v.double() for k, v in s.items()}

    def ln(x: torch.Tensor, p: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], d[f"{p}.weight"], d[f"{p}.bias"], eps=1e-5)

    def svd_linear(x: torch.Tensor, p: str) -> torch.Tensor:
        w = (
            d[f"{p}.weight_main"]
            + d[f"{p}.U_residual"] @ torch.diag(d[f"{p}.S_residual"]) @ d[f"{p}.V_residual"]
        )
        return x @ w.T + d[f"{p}.bias"]

    w_patch = d["backbone.embeddings.patch_embedding.weight"]
    x = F.conv2d(px, w_patch, stride=w_patch.shape[-1]).flatten(2).transpose(1, 2)
    n, hidden = x.shape[0], x.shape[2]
    cls = d["backbone.embeddings.class_embedding"].expand(n, 1, hidden)
    x = torch.cat([cls, x], 1) + d["backbone.embeddings.position_embedding.weight"]
    x = ln(x, "backbone.pre_layrnorm")
    layer = 0
    while f"backbone.encoder.layers.{layer}.mlp.fc1.weight" in d:
        p = f"backbone.encoder.layers.{layer}"
        h = ln(x, f"{p}.layer_norm1")
        q, k, v = (
            svd_linear(h, f"{p}.self_attn.{name}")
            .view(n, -1, heads, hidden // heads)
            .transpose(1, 2)
            for name in PROJ[:3]
        )
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hidden // heads), -1) @ v
        x = x + svd_linear(att.transpose(1, 2).reshape(n, -1, hidden), f"{p}.self_attn.out_proj")
        h = ln(x, f"{p}.layer_norm2") @ d[f"{p}.mlp.fc1.weight"].T + d[f"{p}.mlp.fc1.bias"]
        h = h * torch.sigmoid(1.702 * h)
        x = x + h @ d[f"{p}.mlp.fc2.weight"].T + d[f"{p}.mlp.fc2.bias"]
        layer += 1
    pooled = ln(x[:, 0], "backbone.post_layernorm")
    if "head.s" in d:
        logits = d["head.s"] * F.normalize(pooled) @ F.normalize(d["head.weight"]).T
    else:
        logits = pooled @ d["head.weight"].T + d["head.bias"]
    return torch.softmax(logits, 1)[:, 1].numpy()


def save(
    tmp_path: Path,
    state: dict[str, torch.Tensor],
    *,
    wrapped: bool,
    prefix: str,
    config: dict[str, Any] | None = None,
) -> Path:
    state = {prefix + k: v for k, v in state.items()}
    obj: Any = state
    if wrapped:
        obj = {
            "state_dict": state,
            "model_config": config or {},
            "epoch": 3,
            "auc": 0.97,
            "eer": 0.08,
            "model_checksum": "abc123",
        }
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    return path


@pytest.mark.parametrize(
    ("arcface", "wrapped", "prefix", "hidden"),
    [
        (False, False, "", 32),
        (False, True, "module.", 32),
        (True, True, "", 32),
        (True, False, "module.", 128),  # bare + no override: heads = hidden / 64 = 2
    ],
)
async def test_served_probabilities_match_a_plain_pytorch_forward(
    serve: Any,
    encode_image: Any,
    form: Any,
    tmp_path: Path,
    arcface: bool,
    wrapped: bool,
    prefix: str,
    hidden: int,
) -> None:
    state = make_state(hidden=hidden, arcface=arcface)
    config = {
        "use_arcface_head": arcface,
        "arcface_s": 8.0,
        "arcface_m": 0.5,
        "rank": 4,
        "num_heads": 2,
    }
    path = save(tmp_path, state, wrapped=wrapped, prefix=prefix, config=config)
    heads_override = 2 if (not wrapped and hidden == 32) else None
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (28, 28, 3), dtype=np.uint8) for _ in range(3)]
    frames.append(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8))  # resized (area)
    expected = reference_probs(state, frames, heads=2)
    assert np.ptp(expected) > 1e-3  # the model does not answer a constant
    async with serve(backend="effort", checkpoint=path, num_heads=heads_override) as client:
        r = await client.post("/check_frame_batch", files=form([encode_image(f) for f in frames]))
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["probs"], expected, atol=1e-5)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (
            lambda s: s.__setitem__("backbone.post_layernorm.weight", torch.ones(31)),
            "backbone.post_layernorm.weight",
        ),
        (
            lambda s: s.__setitem__(
                "backbone.encoder.layers.1.self_attn.k_proj.U_residual", torch.ones(32, 5)
            ),
            "backbone.encoder.layers.1.self_attn.k_proj",
        ),
        (
            lambda s: s.pop("backbone.encoder.layers.0.mlp.fc2.bias"),
            "backbone.encoder.layers.0.mlp.fc2.bias",
        ),
        (lambda s: s.__setitem__("head.weight", torch.ones(3, 32)), "head.weight"),
        (  # a linear given both densely and as SVD parts is ambiguous
            lambda s: s.__setitem__(
                "backbone.encoder.layers.0.self_attn.v_proj.weight", torch.ones(32, 32)
            ),
            "backbone.encoder.layers.0.self_attn.v_proj.weight",
        ),
    ],
)
async def test_checkpoint_that_does_not_fit_is_refused_naming_the_key(
    serve: Any, tmp_path: Path, mutate: Any, needle: str
) -> None:
    state = make_state()
    mutate(state)
    path = save(tmp_path, state, wrapped=True, prefix="module.", config={"num_heads": 2})
    async with serve(backend="effort", checkpoint=path) as client:
        ready = await client.get("/v2/health/ready")
        live = await client.get("/v2/health/live")
    assert live.status_code == 200
    assert ready.status_code == 503
    assert needle in ready.json()["error"]


async def test_a_file_that_is_not_a_checkpoint_is_refused(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"definitely not torch")
    async with serve(backend="effort", checkpoint=path) as client:
        ready = await client.get("/v2/health/ready")
    assert ready.status_code == 503 and "junk.pth" in ready.json()["error"]


async def test_unexpected_keys_are_reported_and_the_model_still_serves(
    serve: Any, png: Any, form: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = make_state()
    state["backbone.encoder.layers.0.self_attn.extra.U_residual"] = torch.ones(32, 4)
    state["loss_func.weight"] = torch.ones(2)
    path = save(tmp_path, state, wrapped=True, prefix="module.", config={"num_heads": 2})
    with caplog.at_level("WARNING", logger="wma_model_server"):
        async with serve(backend="effort", checkpoint=path) as client:
            r = await client.post("/check_frame_batch", files=form([png(9, 28)]))
    assert r.status_code == 200 and len(r.json()["probs"]) == 1
    (report,) = [rec.getMessage() for rec in caplog.records if "not used" in rec.getMessage()]
    for key in ("backbone.encoder.layers.0.self_attn.extra.U_residual", "loss_func.weight"):
        assert key in report


def with_svd_bookkeeping(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors Effort's trainer saves beside the residuals: the discarded top
    singular triplet of each attention linear (S_r, U_r, V_r)."""
    out = dict(state)
    for key in [k for k in state if k.endswith(".S_residual")]:
        base = key.removesuffix("S_residual")
        out |= {base + "S_r": torch.ones(1), base + "U_r": torch.ones(32, 1)}
        out[base + "V_r"] = torch.ones(1, 32)
    out["backbone.embeddings.position_ids"] = torch.arange(5)[None]
    return out


async def test_svd_bookkeeping_tensors_are_listed_once_at_debug_not_warned_about(
    serve: Any, png: Any, form: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = with_svd_bookkeeping(make_state())
    state["loss_func.weight"] = torch.ones(2)  # not Effort's own: still a warning
    path = save(tmp_path, state, wrapped=True, prefix="module.", config={"num_heads": 2})
    with caplog.at_level("DEBUG", logger="wma_model_server"):
        async with serve(backend="effort", checkpoint=path) as client:
            r = await client.post("/check_frame_batch", files=form([png(9, 28)]))
    assert r.status_code == 200
    bookkeeping = [k for k in state if k.endswith(("S_r", "U_r", "V_r"))]
    assert len(bookkeeping) == 2 * 4 * 3
    messages = [(rec.levelname, rec.getMessage()) for rec in caplog.records]
    warnings = [m for level, m in messages if level == "WARNING" and "not used" in m]
    assert warnings == ["checkpoint keys not used by the model: loss_func.weight"]
    (debug,) = [m for level, m in messages if level == "DEBUG" and "not used" in m]
    assert "24 SVD bookkeeping tensors" in debug
    assert "backbone.embeddings.position_ids" in debug
    for key in bookkeeping:
        assert debug.count(key + ",") + debug.endswith(key) + debug.count(key + ";") == 1


def trainer_checkpoint(
    path: Path, state: dict[str, torch.Tensor], config: dict[str, Any], *, ddp: bool
) -> None:
    """Write a checkpoint the way DeepfakeBench's trainer ``save_ckpt`` does: the
    (DDP-prefixed) state dict with the run's metrics, which are numpy scalars."""
    from collections import OrderedDict

    prefix = "module." if ddp else ""
    torch.save(
        {
            "state_dict": OrderedDict((prefix + k, v) for k, v in state.items()),
            "model_config": config,
            "epoch": 7,
            "auc": np.float64(0.9312),
            "eer": np.float64(0.1765),
            "model_checksum": "6f1ed002ab5595859014ebf0951522d9",
        },
        path,
    )


def as_numpy1_pickle(path: Path) -> None:
    """Rewrite a checkpoint as numpy 1.x pickles its scalars (``numpy.core.multiarray``)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    (pkl,) = [n for n in members if n.endswith("/data.pkl")]
    assert b"numpy._core.multiarray\nscalar" in members[pkl]
    members[pkl] = members[pkl].replace(
        b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)


@pytest.mark.parametrize(
    ("ddp", "numpy1", "arcface"),
    [(True, False, False), (False, False, True), (True, True, True)],
    ids=["ddp-linear", "arcface", "numpy1-pickle-ddp-arcface"],
)
async def test_a_checkpoint_saved_by_the_trainer_with_numpy_metrics_serves_the_reference(
    serve: Any,
    encode_image: Any,
    form: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    ddp: bool,
    numpy1: bool,
    arcface: bool,
) -> None:
    state = with_svd_bookkeeping(make_state(arcface=arcface, seed=3))
    config = {"use_arcface_head": arcface, "arcface_s": 8.0, "arcface_m": 0.5, "rank": 4}
    path = tmp_path / "top_n_effort_run_eer0.1765.pth"
    trainer_checkpoint(path, state, config | {"num_heads": 2}, ddp=ddp)
    if numpy1:
        as_numpy1_pickle(path)
    with pytest.raises(pickle.UnpicklingError, match="numpy"):  # what a bare load says
        torch.load(path, weights_only=True)
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (28, 28, 3), dtype=np.uint8) for _ in range(4)]
    expected = reference_probs(state, frames, heads=2)
    assert np.ptp(expected) > 1e-3
    with caplog.at_level("INFO", logger="wma_model_server"):
        async with serve(backend="effort", checkpoint=path) as client:
            r = await client.post(
                "/check_frame_batch", files=form([encode_image(f) for f in frames])
            )
    assert r.status_code == 200, r.text
    assert np.abs(np.array(r.json()["probs"]) - expected).max() <= 1e-5
    logged = [rec.getMessage() for rec in caplog.records]
    assert f"checkpoint {path.name}: epoch 7, auc 0.9312, eer 0.1765" in logged
    assert not [m for m in logged if "not used" in m]  # bookkeeping is DEBUG only


class _Payload:
    """A pickled object that runs code on load, as a malicious checkpoint would."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, ("import os; os.environ['WMA_TEST_PAYLOAD_RAN'] = '1'",))


@pytest.mark.parametrize(
    ("extra", "global_name"),
    [
        (_Payload(), "'exec'"),
        (np.array([0.1765]), "numpy._core.multiarray._reconstruct"),  # arrays are not metrics
        (np.int32(7), "numpy.dtypes.Int32DType"),
    ],
    ids=["code", "ndarray", "int32"],
)
async def test_a_checkpoint_with_any_other_global_is_refused_naming_it(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: Any, global_name: str
) -> None:
    monkeypatch.delenv("WMA_TEST_PAYLOAD_RAN", raising=False)
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": make_state(), "eer": np.float64(0.2), "extra": extra}, path)
    async with serve(backend="effort", checkpoint=path) as client:
        ready = await client.get("/v2/health/ready")
    assert ready.status_code == 503
    error = ready.json()["error"]
    assert "ckpt.pth refers to the Python global" in error and global_name in error
    assert "weights-only load does not allow" in error
    assert "WMA_TEST_PAYLOAD_RAN" not in os.environ


async def test_bfloat16_path_serves_probabilities_close_to_float32(
    serve: Any, encode_image: Any, form: Any, tmp_path: Path
) -> None:
    # The reduced-precision code path used on CUDA, exercised on the CPU.
    state = make_state()
    path = save(tmp_path, state, wrapped=True, prefix="", config={"num_heads": 2})
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (28, 28, 3), dtype=np.uint8) for _ in range(4)]
    expected = reference_probs(state, frames, heads=2)
    assert np.ptp(expected) > 0.05
    async with serve(backend="effort", checkpoint=path, dtype="bfloat16") as client:
        r = await client.post("/check_frame_batch", files=form([encode_image(f) for f in frames]))
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["probs"], expected, atol=0.05)
    assert np.abs(np.array(r.json()["probs"]) - expected).max() > 1e-4  # it really ran in bf16


def _odd_frames() -> dict[str, bytes]:
    """Frames the old server decoded differently from Pillow (EXIF, CMYK, 16 bit)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(4)
    photo = Image.fromarray(rng.integers(0, 256, (180, 300, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = {}
    for name, image, kwargs in (
        ("exif-rotated", photo, {"exif": exif.tobytes()}),
        ("cmyk", photo.convert("CMYK"), {}),
    ):
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90, **kwargs)
        out[name] = buf.getvalue()
    ok, png16 = cv2.imencode(".png", rng.integers(0, 65536, (180, 300, 3), dtype=np.uint16))
    assert ok
    out["16-bit"] = bytes(png16)
    return out


@pytest.mark.parametrize("kind", ["exif-rotated", "cmyk", "16-bit"])
def test_the_model_input_is_the_old_servers_for_odd_frames(kind: str) -> None:
    from wma_model_server.backends.effort import EffortBackend, EffortModel
    from wma_model_server.backends.effort_checkpoint import EffortArch
    from wma_wire.frames import FrameLimits, open_frame
    from wma_wire.imaging import decode_image

    data = _odd_frames()[kind]
    arch = EffortArch(32, 1, 2, 64, 14, 224, arcface=False, arcface_s=None)
    backend = EffortBackend("m", EffortModel(arch), "cpu", "float32", "area")
    fmt = "png" if kind == "16-bit" else "jpeg"
    ours = backend.prepare(decode_image(open_frame(data, fmt, FrameLimits(), 0)))  # type: ignore[arg-type]
    # app3.py: imdecode, resize to 224 with INTER_AREA, BGR -> RGB, ToTensor, Normalize.
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(cv2.resize(bgr, (224, 224), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    original = ((rgb.astype(np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1)
    assert ours.shape == (3, 224, 224)
    np.testing.assert_allclose(ours, original, atol=1e-6)


async def test_odd_frames_score_as_the_reference_forward_on_opencvs_decoding(
    serve: Any, form: Any, tmp_path: Path
) -> None:
    state = make_state(seed=6)
    path = save(tmp_path, state, wrapped=True, prefix="", config={"num_heads": 2})
    frames = _odd_frames()
    decoded = [
        cv2.cvtColor(cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        for f in frames.values()
    ]
    expected = reference_probs(state, decoded, heads=2)
    async with serve(backend="effort", checkpoint=path) as client:
        r = await client.post("/check_frame_batch", files=form(list(frames.values())))
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["probs"], expected, atol=1e-5)


async def test_auto_and_tf32_serve_exactly_the_fp32_probabilities_on_a_cpu(
    serve: Any, encode_image: Any, form: Any, tmp_path: Path
) -> None:
    path = save(tmp_path, make_state(), wrapped=True, prefix="", config={"num_heads": 2})
    rng = np.random.default_rng(8)
    files = form([encode_image(rng.integers(0, 256, (28, 28, 3))) for _ in range(3)])
    answers = {}
    for dtype in ("auto", "float32", "tf32"):
        async with serve(backend="effort", checkpoint=path, dtype=dtype) as client:
            answers[dtype] = (await client.post("/check_frame_batch", files=files)).json()["probs"]
    assert answers["auto"] == answers["float32"] == answers["tf32"]
