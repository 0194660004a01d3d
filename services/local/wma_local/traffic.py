"""The requests the soak and the drills send: good analyze calls and a catalogue of bad ones.

A good call is a ``POST /v1/analyze`` of 4-12 uniform grey PNG frames (the mock
backend scores a frame of grey ``v`` as ``v / 255`` plus the member's bias, so
:mod:`wma_local.oracle` knows the exact answer). A bad call is one of
:data:`MALFORMED`: a request a careless or hostile client sends (wrong content
types, broken multipart, non-image parts, too many or too large frames, bad
Open Inference Protocol JSON to a member...), each with the 4xx it must get;
every bad answer must also be a JSON ``{"error": ...}``. Bodies are built here
byte by byte, so broken framing is really broken on the wire.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from PIL import Image

from wma_local.samples import grey_frame

__all__ = ["MALFORMED", "Call", "good_call", "malformed_call", "multipart"]

GATEWAY = "gateway"
ANALYZE = "/v1/analyze"


@dataclass(frozen=True)
class Call:
    """One request: where it goes (``target`` is ``"gateway"`` or a model id) and what
    it must get. ``levels`` (good calls) are the frames' grey levels, for the oracle."""

    kind: str
    target: str
    method: str
    path: str
    content: bytes
    headers: dict[str, str]
    expect: frozenset[int]
    levels: tuple[int, ...] = ()

    @property
    def good(self) -> bool:
        return self.kind == "good"


def multipart(
    fields: list[tuple[str, str]],
    files: list[tuple[str, bytes, str]],
    boundary: str = "wma-soak-boundary",
) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body of text ``fields`` and ``files`` (name, bytes, type)."""
    out = io.BytesIO()
    for name, value in fields:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        out.write(value.encode() + b"\r\n")
    for i, (name, data, ctype) in enumerate(files):
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
        head += f'filename="{i}.png"\r\nContent-Type: {ctype}\r\n\r\n'
        out.write(head.encode() + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), {"content-type": f"multipart/form-data; boundary={boundary}"}


@cache
def _frame(level: int) -> bytes:
    return grey_frame(level)


@cache
def _large_frame() -> bytes:
    """A PNG of 2000x2000 (4 Mpx, over max_frame_pixels) that is only a few KB."""
    out = io.BytesIO()
    Image.new("RGB", (2000, 2000), (90, 90, 90)).save(out, format="PNG")
    return out.getvalue()


def good_call(rng: random.Random, participant: str = "soak") -> Call:
    """A valid analyze call: 4-12 frames around a random grey level (all verdicts occur)."""
    centre = rng.randrange(20, 236)
    levels = tuple(
        min(255, max(0, centre + rng.randrange(-12, 13))) for _ in range(rng.randrange(4, 13))
    )
    body, headers = multipart(
        [("participant_id", participant)], [("files", _frame(v), "image/png") for v in levels]
    )
    return Call("good", GATEWAY, "POST", ANALYZE, body, headers, frozenset({200}), levels)


def _analyze(
    kind: str, expect: int | set[int], body: bytes, headers: dict[str, str]
) -> Callable[[random.Random], Call]:
    codes = frozenset({expect} if isinstance(expect, int) else expect)
    return lambda rng: Call(kind, GATEWAY, "POST", ANALYZE, body, headers, codes)


def _form(
    files: list[tuple[str, bytes, str]], fields: list[tuple[str, str]] | None = None, **kw: str
) -> tuple[bytes, dict[str, str]]:
    return multipart([("participant_id", "soak")] if fields is None else fields, files, **kw)


def _truncated(rng: random.Random) -> Call:
    body, headers = _form([("files", _frame(v), "image/png") for v in (60, 70, 80)])
    cut = rng.randrange(len(body) // 4, len(body) - 8)
    return Call("truncated_body", GATEWAY, "POST", ANALYZE, body[:cut], headers, frozenset({400}))


def _oip(kind: str, body: bytes, expect: int, model: str | None = None) -> Callable[..., Call]:
    """An OIP infer call to a member (its own model id unless ``model`` says otherwise)."""

    def build(rng: random.Random, member: str) -> Call:
        path = f"/v2/models/{model or member}/infer"
        headers = {"content-type": "application/json"}
        return Call(kind, member, "POST", path, body, headers, frozenset({expect}))

    return build


def _member_legacy(rng: random.Random, member: str) -> Call:
    body, headers = _form([("files", b"not an image", "text/plain")], fields=[])
    return Call(
        "member_legacy_text_part", member, "POST", "/check_frame_batch", body, headers,
        frozenset({415}),
    )  # fmt: skip


_GOOD_FILES = [("files", _frame(100), "image/png")]
_HUGE_INT = (
    b'{"id": "x", "inputs": [{"name": "images", "shape": ['
    + b"9" * 5000
    + b'], "datatype": "BYTES", "data": []}]}'
)

# The gateway's bad requests (each a builder from a random source).
_GATEWAY_CASES: dict[str, Callable[[random.Random], Call]] = {
    # JSON is an OIP infer request to the gateway: this one is not a valid one
    "json_body": _analyze(
        "json_body", 400, b'{"frames": []}', {"content-type": "application/json"}
    ),
    "text_body": _analyze("text_body", 415, b"hello", {"content-type": "text/plain"}),
    "no_content_type": _analyze("no_content_type", 415, b"x" * 32, {}),
    "no_boundary": _analyze(
        "no_boundary", 400, _form(_GOOD_FILES)[0], {"content-type": "multipart/form-data"}
    ),
    "long_boundary": _analyze("long_boundary", 400, *_form(_GOOD_FILES, boundary="b" * 300)),
    "truncated_body": _truncated,
    "text_part": _analyze("text_part", 415, *_form([("files", b"hello", "text/plain")])),
    "not_an_image": _analyze(
        "not_an_image", 415, *_form([("files", b"GIF89a" + b"\0" * 64, "image/png")])
    ),
    "no_frames": _analyze("no_frames", 400, *_form([])),
    "no_participant": _analyze("no_participant", 400, *_form(_GOOD_FILES, fields=[])),
    "bad_participant": _analyze(
        "bad_participant", 400, *_form(_GOOD_FILES, fields=[("participant_id", "a b")])
    ),
    "too_many_frames": _analyze(
        "too_many_frames", 413, *_form([("files", _frame(100), "image/png")] * 65)
    ),
    "too_many_pixels": _analyze(
        "too_many_pixels", 413, *_form([("files", _large_frame(), "image/png")])
    ),
    "oversized_frame": _analyze(
        "oversized_frame", 413, *_form([("files", _frame(100) + b"\0" * (4 * 2**20), "image/png")])
    ),
    "wrong_method": lambda rng: Call(
        "wrong_method", GATEWAY, "GET", ANALYZE, b"", {}, frozenset({405})
    ),
}
# The members' bad requests (OIP infer and the legacy form), sent to a random member.
_MEMBER_CASES: dict[str, Callable[[random.Random, str], Call]] = {
    "oip_bad_json": _oip("oip_bad_json", b'{"inputs": [', 400),
    "oip_huge_integer": _oip("oip_huge_integer", _HUGE_INT, 400),
    "oip_no_inputs": _oip("oip_no_inputs", json.dumps({"id": "x", "inputs": []}).encode(), 400),
    "oip_wrong_datatype": _oip(
        "oip_wrong_datatype",
        json.dumps(
            {"inputs": [{"name": "images", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
        ).encode(),
        400,
    ),
    "oip_unknown_model": _oip(
        "oip_unknown_model", json.dumps({"inputs": []}).encode(), 404, model="nosuchmodel"
    ),
    "member_legacy_text_part": _member_legacy,
}
MALFORMED: tuple[str, ...] = (*_GATEWAY_CASES, *_MEMBER_CASES)


def malformed_call(rng: random.Random, members: tuple[str, ...], kind: str | None = None) -> Call:
    """One bad request: ``kind`` (one of :data:`MALFORMED`) or a random one."""
    kind = kind or rng.choice(MALFORMED)
    if kind in _GATEWAY_CASES:
        return _GATEWAY_CASES[kind](rng)
    return _MEMBER_CASES[kind](rng, rng.choice(members))
