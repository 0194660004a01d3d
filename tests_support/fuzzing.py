"""Fuzzing both services: schemathesis over their OpenAPI documents, and the hostile
cases no schema describes. Shared by the bounded tests in ``make test`` and by
``make fuzz`` (``scripts/fuzz.py``, more examples, real processes).

:func:`fuzz_openapi` loads ``/openapi.json`` from a running server and, for every
operation, lets schemathesis generate valid and invalid requests (hypothesis,
derandomized, ``max_examples`` per operation and mode), sends each over real HTTP
and checks the answer: no 5xx, a documented status, the documented content type,
headers and body schema, and invalid data refused with a 4xx. Schemathesis's
``positive_data_acceptance`` is left out: a schema cannot say "a decodable JPEG",
so schema-valid random bytes are rightly refused (415).

:func:`hostile_cases` are the requests found by hand to break servers (a boundary
over 256 characters, JSON integers over 4300 digits, truncated bodies, a
decompression bomb, wrong part types, oversized fields, gzip bodies);
:func:`run_hostile` sends each on one kept-alive connection and checks that it
is a 4xx JSON ``{"error": ...}`` and that the next request on the same connection
is answered.
"""

from __future__ import annotations

import base64
import functools
import gzip
import io
import json
import struct
import time
import zlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err

REFUSALS = ["400", "401", "404", "413", "415", "429"]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# Invalid data must be refused with a 4xx the services answer: a form with more
# parts than a route takes is a 413 (over a count limit), not a 400.
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}
)


@dataclass
class FuzzReport:
    """What a run sent and what it found (one line per distinct failure)."""

    calls: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(self, status: int) -> None:
        self.calls += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def summary(self) -> str:
        seen = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return f"{self.calls} calls ({seen}), {len(self.failures)} failures"


def fuzz_openapi(
    base_url: str,
    *,
    max_examples: int,
    headers: Mapping[str, str] | None = None,
    path_parameters: Mapping[str, str] | None = None,
    operations: Collection[str] | None = None,
    seed: int = 0,
) -> FuzzReport:
    """Fuzz every operation of ``base_url``'s ``/openapi.json``; failures are collected.

    ``path_parameters`` (``{"model_id": "m1"}``) pin path parameters in valid
    requests, so they reach past the 404 of an unknown model; invalid requests
    still get generated ones. ``operations`` (``"POST /check_frame"``) limits the run."""
    auth = dict(headers or {})
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=auth, config=CONFIG)
    report = FuzzReport()
    seen: set[str] = set()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            if isinstance(result, Err):  # a document schemathesis cannot read is a failure
                report.failures.append(f"invalid document: {result.err()}")
                continue
            operation = result.ok()
            if operations is not None and operation.label not in operations:
                continue
            for mode in _modes(operation):
                pinned = {
                    k: v
                    for k, v in (path_parameters or {}).items()
                    if mode is GenerationMode.POSITIVE and f"{{{k}}}" in operation.path
                }
                strategy = operation.as_strategy(
                    generation_mode=mode, path_parameters=pinned or None
                )
                _fuzz_operation(
                    operation,
                    strategy,
                    mode,
                    base_url,
                    session,
                    auth,
                    max_examples,
                    seed,
                    report,
                    seen,
                )
    return report


def check_documented(
    base_url: str,
    method: str,
    path: str,
    response: httpx.Response,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Raise (schemathesis's failure group) unless ``response`` to ``method path`` is
    what the document declares: status, content type and body schema."""
    schema = schemathesis.openapi.from_url(
        f"{base_url}/openapi.json", headers=dict(headers or {}), config=CONFIG
    )
    response.request.read()  # a multipart body is a stream until read
    schema[path][method.upper()].validate_response(response)


def _modes(operation: Any) -> list[GenerationMode]:
    """Valid requests always; invalid ones where there is something to make invalid
    (a body, a query or header parameter: any string is a valid path parameter)."""
    inputs = operation.get_request_payload_content_types() or any(
        p.location.value != "path" for p in operation.iter_parameters()
    )
    return (
        [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if inputs else [GenerationMode.POSITIVE]
    )


def _fuzz_operation(
    operation: Any,
    strategy: Any,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    headers: dict[str, str],
    max_examples: int,
    seed: int,
    report: FuzzReport,
    seen: set[str],
) -> None:
    @hypothesis.seed(seed)
    @hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @hypothesis.given(strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        report.add(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, FailureGroup) as exc:  # record, keep fuzzing
            line = (
                f"{operation.label} [{mode.value}] -> {response.status_code}: "
                + " ".join(str(exc).split())[:400]
            )
            key = f"{operation.label} {mode.value} {type(exc).__name__} {response.status_code}"
            if key not in seen:
                seen.add(key)
                report.failures.append(line)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:  # negative mode of a route without inputs
        pass


# --- hostile cases -------------------------------------------------------------------


@dataclass(frozen=True)
class HostileCase:
    """One request and the statuses it may get (always a JSON ``{"error": ...}``)."""

    name: str
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    expect: frozenset[int]


def png(width: int, height: int, rows: bytes | None = None) -> bytes:
    """A PNG of ``width`` x ``height`` (grey, 8 bit); ``rows`` replaces the pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = rows if rows is not None else b"".join(b"\0" + b"\x80" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


@functools.cache
def zlib_bomb_png(side: int = 5000) -> bytes:
    """A PNG of ~25 KB that declares ``side`` x ``side`` pixels and inflates to
    side**2 bytes (25 MB): a decompression bomb, refused from its header."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + one grey row
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return _png_with_idat(side, side, data)


def _png_with_idat(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _form(
    parts: list[tuple[str, str | None, str | None, bytes]], boundary: str = "wmafuzz"
) -> bytes:
    """A multipart body: (name, filename, content type, data) per part."""
    out = io.BytesIO()
    for name, filename, ctype, data in parts:
        out.write(f"--{boundary}\r\n".encode())
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.write(f"Content-Disposition: {disp}\r\n".encode())
        if ctype is not None:
            out.write(f"Content-Type: {ctype}\r\n".encode())
        out.write(b"\r\n" + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


def _multipart(boundary: str = "wmafuzz") -> dict[str, str]:
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _infer_body(**overrides: Any) -> dict[str, Any]:
    image = base64.b64encode(png(8, 8)).decode()
    body: dict[str, Any] = {
        "id": "fuzz",
        "inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": [image]}],
    }
    body.update(overrides)
    return body


def hostile_cases(service: str, *, model_id: str = "m1") -> Iterator[HostileCase]:
    """The hostile requests for ``service`` (``"gateway"`` or ``"model-server"``)."""
    ok_png = png(8, 8)
    huge = "9" * 5000  # over Python's 4300-digit int conversion limit
    field_name = "files"
    path = "/v1/analyze?participant_id=fuzz" if service == "gateway" else "/check_frame_batch"
    frame = (field_name, "f.png", "image/png")
    form_cases: list[tuple[str, dict[str, str], bytes, set[int]]] = [
        ("boundary of 257 characters", _multipart("b" * 257), b"x", {400}),
        (
            "boundary of 300 characters, well-formed body",
            _multipart("c" * 300),
            _form([(*frame, ok_png)], "c" * 300),
            {400},
        ),
        ("no boundary parameter", {"Content-Type": "multipart/form-data"}, b"x", {400}),
        ("neither multipart nor an infer request", {"Content-Type": "text/plain"}, b"{}", {415}),
        ("no content type", {}, b"abc", {415}),
        ("empty body", _multipart(), b"", {400}),
        ("truncated body", _multipart(), _form([(*frame, ok_png)])[:-40], {400}),
        ("unterminated part", _multipart(), b"--wmafuzz\r\nContent-Disposition: form-data", {400}),
        ("garbage after a boundary", _multipart(), b"--wmafuzz\r\n\x00\xff\xfe" * 50, {400}),
        (
            "part of type text/plain",
            _multipart(),
            _form([(field_name, "f.txt", "text/plain", b"hi")]),
            {415},
        ),
        (
            "part of type image/gif",
            _multipart(),
            _form([(field_name, "f.gif", "image/gif", b"GIF89a")]),
            {415},
        ),
        (
            "part that is not an image",
            _multipart(),
            _form([(*frame, b"not an image at all")]),
            {400, 415},
        ),
        ("truncated PNG", _multipart(), _form([(*frame, ok_png[:30])]), {200, 400, 415}),
        (
            "PNG declaring 100000x100000 pixels",
            _multipart(),
            _form([(*frame, png(100000, 100000, b""))]),
            {413},
        ),
        (
            "zlib bomb PNG (5000x5000 in 25 KB)",
            _multipart(),
            _form([(*frame, zlib_bomb_png())]),
            {413},
        ),
        ("8 PNGs of 4096x4096", _multipart(), _form([(*frame, png(4096, 4096, b""))] * 8), {413}),
        ("2000 parts", _multipart(), _form([("other", None, None, b"x")] * 2000), {413}),
        (
            "header of 64 KiB in a part",
            _multipart(),
            _form([(*frame[:2], "image/png; x=" + "a" * 65536, ok_png)]),
            {200, 400, 413, 415},
        ),
        (
            "gzip Content-Encoding",
            {**_multipart(), "Content-Encoding": "gzip"},
            gzip.compress(_form([(*frame, ok_png)])),
            {400, 415},
        ),
    ]
    if service == "gateway":
        bare = "/v1/analyze"  # participant_id only where each case puts it
        for name, pid, where in [
            ("participant_id of 5000 bytes", b"p" * 5000, bare),
            ("participant_id with a newline", b"p\n", bare),
            ("participant_id in the form and the query", b"p", path),
        ]:
            body = _form([(*frame, ok_png), ("participant_id", None, None, pid)])
            yield HostileCase(name, "POST", where, _multipart(), body, frozenset({400}))
        yield HostileCase(
            "no participant_id",
            "POST",
            bare,
            _multipart(),
            _form([(*frame, ok_png)]),
            frozenset({400}),
        )
    for name, headers, body, expect in form_cases:
        yield HostileCase(name, "POST", path, headers, body, frozenset(expect))
    # The OIP infer request: the model server's infer route, and the gateway's analyze
    # (which takes its frames as one too)
    infer = f"/v2/models/{model_id}/infer" if service == "model-server" else path
    json_type = {"Content-Type": "application/json"}
    for name, doc, expect in [
        ("id of 5000 digits", f'{{"id": {huge}, "inputs": []}}', {400}),
        (
            "shape of 5000 digits",
            json.dumps(_infer_body()).replace('"shape": [1]', f'"shape": [{huge}]'),
            {400},
        ),
        (
            "data of 5000 digits",
            '{"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1], '
            f'"data": [{huge}]}}]}}',
            {400},
        ),
        ("nested 100000 deep", "[" * 100000 + "]" * 100000, {400}),
        ("truncated JSON", json.dumps(_infer_body())[:-7], {400}),
        ("not JSON", "\x00\xff not json", {400}),
        ("JSON array", "[1, 2]", {400}),
        ("inputs of the wrong type", json.dumps(_infer_body(inputs="images")), {400}),
        (
            "image not base64",
            json.dumps(
                _infer_body(
                    inputs=[{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["***"]}]
                )
            ),
            {400},
        ),
        (
            "pixels claiming 100000x100000",
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "pixels",
                            "datatype": "UINT8",
                            "shape": [1, 100000, 100000, 3],
                            "data": [0],
                        }
                    ]
                }
            ),
            {400, 413},
        ),
        (
            "zero-size shape with huge dimensions",
            json.dumps(
                {
                    "inputs": [
                        {"name": "images", "datatype": "BYTES", "shape": [0, 2**62], "data": []}
                    ]
                }
            ),
            {400},
        ),
        (
            "negative shape",
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "pixels",
                            "datatype": "UINT8",
                            "shape": [-1, 2, 2, 3],
                            "data": [],
                        }
                    ]
                }
            ),
            {400},
        ),
        (
            "unknown output",
            json.dumps(_infer_body(outputs=[{"name": "logits"}])),
            {400} if service == "model-server" else {200},  # the gateway has no outputs
        ),
    ]:
        yield HostileCase(name, "POST", infer, json_type, doc.encode(), frozenset(expect))
    header = json.dumps(_infer_body()).encode()
    for name, length in [
        ("binary header length not a number", "abc"),
        ("binary header length past the body", str(len(header) + 100)),
        ("binary header length 0", "0"),
        ("binary header length of 5000 digits", huge),
    ]:
        yield HostileCase(
            name,
            "POST",
            infer,
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": length,
            },
            header,
            frozenset({400}),
        )
    binary = json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": 10**6},
                }
            ]
        }
    ).encode()
    yield HostileCase(
        "binary data truncated",
        "POST",
        infer,
        {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(binary)),
        },
        binary + b"\0" * 10,
        frozenset({400}),
    )


def run_hostile(
    base_url: str,
    cases: Iterator[HostileCase],
    *,
    probe: str,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, list[str]]:
    """Send every case on one kept-alive connection; after each, ``GET probe`` must be
    answered on that same connection. Returns (cases sent, failures)."""
    failures: list[str] = []
    sent = 0
    with httpx.Client(base_url=base_url, timeout=timeout, headers=dict(headers or {})) as client:
        for case in cases:
            sent += 1
            start = time.monotonic()
            try:
                r = client.request(case.method, case.path, headers=case.headers, content=case.body)
            except httpx.HTTPError as exc:
                failures.append(f"{case.name}: no answer ({type(exc).__name__}: {exc})")
                continue
            took = time.monotonic() - start
            problem = _check_answer(r, case)
            if problem:
                failures.append(f"{case.name}: {problem} ({took:.2f} s)")
            try:
                pool_before = _connections(client)
                follow = client.get(probe)
                if follow.status_code != 200:
                    failures.append(f"{case.name}: then GET {probe} -> {follow.status_code}")
                elif r.headers.get("connection") != "close" and _connections(client) != pool_before:
                    failures.append(f"{case.name}: then GET {probe} needed a new connection")
            except httpx.HTTPError as exc:
                failures.append(f"{case.name}: then GET {probe} failed ({type(exc).__name__})")
    return sent, failures


def _check_answer(r: httpx.Response, case: HostileCase) -> str | None:
    if r.status_code not in case.expect:
        return f"status {r.status_code}, expected {sorted(case.expect)}: {r.text[:200]!r}"
    if r.status_code >= 400:
        if not r.headers.get("content-type", "").startswith("application/json"):
            return f"status {r.status_code} is {r.headers.get('content-type')!r}, not JSON"
        try:
            body = r.json()
        except ValueError:
            return "the error body is not JSON"
        if not isinstance(body, dict) or not isinstance(body.get("error"), str):
            return f"the error body has no 'error': {r.text[:200]!r}"
    return None


def _connections(client: httpx.Client) -> set[int]:
    pool = client._transport._pool  # type: ignore[attr-defined]
    return {id(c) for c in pool.connections}
