"""Bundles: every kind of malformed file is refused naming the field; sha256 pinning."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from wma_calibrators import BundleError, load_bundle, parse_bundle, write_bundle
from wma_core import VALID_FORMS

CliResult = tuple[int, str, str]


def good_doc() -> dict[str, Any]:
    return {
        "format": "wma-calibrators/v1",
        "thresholds": {"t_low": 0.9967, "t_high": 0.998248},
        "models": {
            "9rfa62j1": {
                "aggregator": "topk4",
                "isotonic": {"x": [0.1, 0.5, 0.9], "y": [0.0, 0.4, 1.0]},
                "metrics": {"auc": 0.9},
            },
            "1mjgo9w1": {
                "aggregator": "softmax_b5",
                "isotonic": {"x": [0.2, 0.8], "y": [0.1, 0.9]},
            },
        },
        "provenance": {"created": "2024-01-01T00:00:00Z"},
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = doc
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return apply


_DELETE = object()
M = "models/9rfa62j1"
CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("format string", _set("format", "wma-calibrators/v2"), "format", "must be"),
    ("x not increasing", _set(f"{M}/isotonic/x", [0.1, 0.9, 0.5]), "isotonic.x[2]", "increasing"),
    ("x repeated", _set(f"{M}/isotonic/x", [0.1, 0.1, 0.9]), "isotonic.x[1]", "increasing"),
    ("y decreasing", _set(f"{M}/isotonic/y", [0.0, 0.6, 0.4]), "isotonic.y[2]", "non-decreasing"),
    ("y below 0", _set(f"{M}/isotonic/y", [-0.1, 0.4, 1.0]), "isotonic.y[0]", "[0, 1]"),
    ("y above 1", _set(f"{M}/isotonic/y", [0.0, 0.4, 1.01]), "isotonic.y[2]", "[0, 1]"),
    ("unequal lengths", _set(f"{M}/isotonic/y", [0.0, 1.0]), "models.9rfa62j1.isotonic", "y has"),
    ("empty x", _set(f"{M}/isotonic/x", []), "isotonic.x", "empty"),
    ("x not a list", _set(f"{M}/isotonic/x", "0.1"), "isotonic.x", "list"),
    ("y string entry", _set(f"{M}/isotonic/y", [0.0, "0.4", 1.0]), "isotonic.y[1]", "number"),
    ("no isotonic", _set(f"{M}/isotonic", _DELETE), "models.9rfa62j1.isotonic", "object"),
    ("unknown aggregator", _set(f"{M}/aggregator", "top4"), "9rfa62j1.aggregator", VALID_FORMS),
    ("aggregator not str", _set(f"{M}/aggregator", 4), "9rfa62j1.aggregator", "string"),
    ("thresholds swapped", _set("thresholds/t_low", 0.999), "thresholds", "t_low < t_high"),
    ("t_high is 1", _set("thresholds/t_high", 1.0), "thresholds", "< 1"),
    ("t_low missing", _set("thresholds/t_low", _DELETE), "thresholds.t_low", "number"),
    ("t_low bool", _set("thresholds/t_low", True), "thresholds.t_low", "number"),
    ("thresholds absent", _set("thresholds", _DELETE), "thresholds", "object"),
    ("no models", _set("models", {}), "models", "at least one"),
    ("unknown top field", _set("colour", "blue"), "colour", "unknown field"),
    ("unknown model field", _set(f"{M}/weight", 2), "models.9rfa62j1.weight", "unknown field"),
    ("unknown threshold", _set("thresholds/t_mid", 0.5), "thresholds.t_mid", "unknown field"),
    ("unknown iso field", _set(f"{M}/isotonic/z", [1]), "isotonic.z", "unknown field"),
    ("metrics not object", _set(f"{M}/metrics", [1]), "models.9rfa62j1.metrics", "object"),
]


@pytest.mark.parametrize(("case", "mutate", "field", "problem"), CASES, ids=[c[0] for c in CASES])
def test_malformed_bundle_is_refused_naming_the_field(
    case: str,
    mutate: Callable[[dict[str, Any]], None],
    field: str,
    problem: str,
    tmp_path: Path,
    wma: Callable[..., CliResult],
) -> None:
    doc = copy.deepcopy(good_doc())
    mutate(doc)
    data = json.dumps(doc).encode()
    with pytest.raises(BundleError) as info:
        parse_bundle(data)
    assert field in info.value.field
    assert problem in info.value.problem
    path = tmp_path / "bundle.json"
    path.write_bytes(data)
    code, out, err = wma("calibrate", "verify", path)
    assert code == 2 and out == ""
    assert field in err and "invalid bundle" in err


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_number_written_as_a_raw_token_is_refused(token: str) -> None:
    text = json.dumps(good_doc()).replace('"y": [0.0, 0.4, 1.0]', f'"y": [0.0, {token}, 1.0]')
    assert token in text
    with pytest.raises(BundleError) as info:
        parse_bundle(text.encode())
    assert info.value.field == "models.9rfa62j1.isotonic.y[1]"
    assert "finite" in info.value.problem


@pytest.mark.parametrize("data", [b"", b"{", b"not json", b"\xff\xfe", b"[1, 2]", b'"x"'])
def test_bytes_that_are_not_a_json_object_are_refused(data: bytes) -> None:
    with pytest.raises(BundleError) as info:
        parse_bundle(data)
    assert info.value.field in ("<file>", "<root>")


def test_valid_bundle_round_trips_and_its_sha256_is_of_the_file_bytes(
    tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    bundle = parse_bundle(json.dumps(good_doc()).encode())
    path = tmp_path / "b.json"
    digest = write_bundle(bundle, path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    again = load_bundle(path, expected_sha256=digest.upper())
    assert again.sha256 == digest
    assert again.models["9rfa62j1"].curve(0.3) == pytest.approx(0.2)
    assert again.models["1mjgo9w1"].curve(5.0) == 0.9  # clipped above the last breakpoint
    code, out, err = wma("calibrate", "verify", path, "--sha256", digest)
    assert code == 0, err
    assert f"sha256 {digest}" in out and "2 model(s)" in out and "softmax_b5" in out


def test_sha256_pin_mismatch_is_refused(tmp_path: Path, wma: Callable[..., CliResult]) -> None:
    path = tmp_path / "b.json"
    digest = write_bundle(parse_bundle(json.dumps(good_doc()).encode()), path)
    wrong = "0" * 64
    with pytest.raises(BundleError) as info:
        load_bundle(path, expected_sha256=wrong)
    assert info.value.field == "sha256" and digest in info.value.problem
    code, out, err = wma("calibrate", "verify", path, "--sha256", wrong)
    assert code == 2 and "sha256" in err and wrong in err


def test_missing_bundle_file_is_a_clear_error(
    tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    code, _, err = wma("calibrate", "verify", tmp_path / "absent.json")
    assert code == 2 and "cannot read" in err
