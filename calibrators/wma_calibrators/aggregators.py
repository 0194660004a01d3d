"""Which aggregator each model uses: defaults, ``ID=NAME`` flags and config files.

The defaults are the product's four checkpoints. A config
file is YAML or JSON, either a flat ``{model_id: aggregator}`` mapping or one
under an ``aggregators`` key; command-line flags override the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml
from wma_core import AggregatorError, parse_aggregator

from wma_calibrators.errors import CalibrateError

DEFAULT_AGGREGATORS: Mapping[str, str] = {
    "9rfa62j1": "topk4",
    "1mjgo9w1": "softmax_b5",
    "dfsesrgu": "topk4",
    "4vtny88m": "topk4",
}


def _checked(model_id: str, name: str) -> str:
    try:
        parse_aggregator(name)
    except AggregatorError as exc:
        raise CalibrateError(f"aggregator for model {model_id!r}: {exc}") from None
    return name


def parse_flags(flags: Iterable[str]) -> dict[str, str]:
    """Parse ``ID=NAME`` pairs, e.g. ``9rfa62j1=topk4``."""
    mapping: dict[str, str] = {}
    for flag in flags:
        model_id, sep, name = flag.partition("=")
        if not sep or not model_id.strip() or not name.strip():
            raise CalibrateError(f"--aggregator expects MODEL_ID=NAME, got {flag!r}")
        mapping[model_id.strip()] = _checked(model_id.strip(), name.strip())
    return mapping


def load_config(path: str | Path) -> dict[str, str]:
    """Read an aggregator mapping from a YAML or JSON file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CalibrateError(f"cannot read aggregator config {path}: {exc.strerror}") from None
    try:
        raw = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CalibrateError(f"aggregator config {path} is not valid: {exc}") from None
    if isinstance(raw, dict) and isinstance(raw.get("aggregators"), dict):
        raw = raw["aggregators"]
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise CalibrateError(
            f"aggregator config {path} must map model ids to aggregator names "
            "(optionally under an 'aggregators' key)"
        )
    return {k: _checked(k, v) for k, v in raw.items()}


def resolve(
    model_ids: Iterable[str], flags: Iterable[str] = (), config: str | Path | None = None
) -> dict[str, str]:
    """The aggregator of every model in ``model_ids``: flags, then config, then defaults."""
    chosen: dict[str, str] = dict(DEFAULT_AGGREGATORS)
    if config is not None:
        chosen.update(load_config(config))
    chosen.update(parse_flags(flags))
    result: dict[str, str] = {}
    for model_id in model_ids:
        if model_id not in chosen:
            raise CalibrateError(
                f"no aggregator for model {model_id!r}: pass --aggregator {model_id}=NAME "
                "(defaults exist only for " + ", ".join(DEFAULT_AGGREGATORS) + ")"
            )
        result[model_id] = chosen[model_id]
    return result
