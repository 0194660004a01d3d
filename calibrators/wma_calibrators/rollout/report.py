"""The rollout report: what the comparison records say about the plan's gates.

Reads comparison records (JSON lines, also when embedded in log lines) and an
optional labels file, and computes the agreement of the two paths, the banner
confusion matrix, uncertain rates, latency percentiles, SLO breaches, errors,
and with labels the TPR/FPR of each path on certain decisions. Pure: records
in, a :class:`Report` out; rendering and plots live in ``report_render``.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from wma_core import FAILED_STATUSES, Banner
from wma_fusion.rollout.metrics import FAILED
from wma_fusion.rollout.records import RECORD_KIND, IdHasher

PATHS = ("legacy", "ensemble")
# The confusion matrix's rows and columns: each banner, and a failed path.
BANNERS = (*(b.value for b in Banner), FAILED)
# The banners a path can record; a failed path records none (null).
_RECORDED_BANNERS = frozenset(b.value for b in Banner)
LABEL_KEYS = ("participant_id_hash", "participant_id", "meeting_id_hash", "meeting_id")


class ReportError(ValueError):
    """Input the report cannot use (named in the message)."""


@dataclass(frozen=True)
class ParsedRecords:
    """What :func:`parse_records` found: the usable records and what it left out."""

    records: list[dict[str, Any]]
    skipped_lines: int  # non-empty lines that are not comparison records
    invalid_records: int  # comparison records with a field the report cannot read


def _usable_path(outcome: dict[str, Any]) -> bool:
    """An outcome the report can count: a known banner or none, a finite latency or none."""
    latency, banner, status = (outcome.get(k) for k in ("latency_ms", "banner", "status"))
    if latency is not None and (
        isinstance(latency, bool)
        or not isinstance(latency, int | float)
        or not math.isfinite(latency)
    ):
        return False
    if status is not None and not isinstance(status, str):
        return False
    return banner is None or (isinstance(banner, str) and banner in _RECORDED_BANNERS)


def parse_records(lines: Iterable[str]) -> ParsedRecords:
    """Comparison records found in ``lines``, with the counts of what was left out.

    A record may be a bare JSON line or the tail of a log line (``... {json}``).
    A record with an unknown banner, a non-numeric latency or a non-string status
    is counted as invalid.
    """
    records: list[dict[str, Any]] = []
    skipped = invalid = 0
    for line in lines:
        start = line.find("{")
        if start < 0:
            skipped += bool(line.strip())
            continue
        try:
            obj = json.loads(line[start:])
        except json.JSONDecodeError:
            skipped += 1
            continue
        if not (
            isinstance(obj, dict)
            and obj.get("kind") == RECORD_KIND
            and all(isinstance(obj.get(p), dict) for p in PATHS)
        ):
            skipped += 1
        elif all(_usable_path(obj[p]) for p in PATHS):
            records.append(obj)
        else:
            invalid += 1
    return ParsedRecords(records, skipped, invalid)


def load_records(paths: Sequence[Path]) -> ParsedRecords:
    records: list[dict[str, Any]] = []
    skipped = invalid = 0
    for path in paths:
        try:
            with path.open(encoding="utf-8") as fh:
                found = parse_records(fh)
        except OSError as exc:
            raise ReportError(f"cannot read records file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ReportError(f"records file {path} is not UTF-8 text") from None
        records += found.records
        skipped += found.skipped_lines
        invalid += found.invalid_records
    return ParsedRecords(records, skipped, invalid)


@dataclass(frozen=True)
class Labels:
    """Ground truth keyed by one record field (``True`` = fake)."""

    key: str
    truth: Mapping[str, bool]

    def of(self, record: Mapping[str, Any]) -> bool | None:
        value = record.get(self.key)
        return None if value is None else self.truth.get(str(value))


def load_labels(path: Path, hasher: IdHasher | None) -> Labels:
    """Read a CSV ``<key>,label`` (label real/fake); raw ids are hashed with ``hasher``
    unless it is ``None`` (records written with ``raw_participant_ids: true``)."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ReportError(f"cannot read labels file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ReportError(f"labels file {path} is not UTF-8 text") from None
    columns = set(rows[0]) if rows else set()
    keys = [k for k in LABEL_KEYS if k in columns]
    if "label" not in columns or len(keys) != 1:
        raise ReportError(f"labels file {path} needs a 'label' column and one of {LABEL_KEYS}")
    key = keys[0]
    truth: dict[str, bool] = {}
    for n, row in enumerate(rows, start=2):
        label = (row["label"] or "").strip().lower()
        if label not in ("real", "fake"):
            raise ReportError(f"labels file {path} line {n}: label must be real or fake")
        value = (row[key] or "").strip()
        if not key.endswith("_hash") and hasher is not None:
            value = hasher.digest(value)
        truth[value] = label == "fake"
    record_key = key if key.endswith("_hash") or hasher is None else f"{key}_hash"
    return Labels(record_key, truth)


@dataclass(frozen=True)
class PathStats:
    runs: int
    errors: int
    degraded: int
    answered: int  # gave a verdict (face or not)
    uncertain: int
    decided: int  # verdict other than NO_FACE
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    slo_breaches: int
    labelled: int = 0
    tpr: float | None = None
    fpr: float | None = None
    accuracy: float | None = None  # on certain decisions
    labelled_uncertain_rate: float | None = None

    @property
    def uncertain_rate(self) -> float | None:
        return self.uncertain / self.decided if self.decided else None


@dataclass(frozen=True)
class Report:
    records: int
    skipped_lines: int
    compared: int  # both paths gave a verdict
    agreement: float | None
    confusion: dict[str, dict[str, int]]  # legacy banner -> ensemble banner -> count
    paths: dict[str, PathStats]
    slo_ms: float
    labels_used: bool
    error_messages: dict[str, dict[str, int]] = field(default_factory=dict)
    invalid_records: int = 0  # comparison records left out (unknown banner, bad latency)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _labelled(outs: list[dict[str, Any]], truth: list[bool | None]) -> dict[str, Any]:
    pairs = [(o.get("verdict"), t) for o, t in zip(outs, truth, strict=True) if t is not None]
    pairs = [(v, t) for v, t in pairs if v in ("REAL", "FAKE", "UNCERTAIN")]
    certain = [(v == "FAKE", t) for v, t in pairs if v != "UNCERTAIN"]
    tp = sum(p and t for p, t in certain)
    fp = sum(p and not t for p, t in certain)
    pos = sum(t for _, t in certain)
    return {
        "labelled": len(pairs),
        "tpr": _ratio(tp, pos),
        "fpr": _ratio(fp, len(certain) - pos),
        "accuracy": _ratio(sum(p == t for p, t in certain), len(certain)),
        "labelled_uncertain_rate": _ratio(len(pairs) - len(certain), len(pairs)),
    }


def _path_stats(outs: list[dict[str, Any]], truth: list[bool | None], slo_ms: float) -> PathStats:
    lat = np.array([float(o["latency_ms"]) for o in outs if o.get("latency_ms") is not None])
    p50, p95, p99 = (
        (float(v) for v in np.percentile(lat, [50, 95, 99])) if lat.size else (None,) * 3
    )
    verdicts = [o.get("verdict") for o in outs]
    return PathStats(
        runs=len(outs),
        errors=sum(o.get("status") in FAILED_STATUSES for o in outs),
        degraded=sum(bool(o.get("degraded")) for o in outs),
        answered=sum(v is not None for v in verdicts),
        uncertain=verdicts.count("UNCERTAIN"),
        decided=sum(v in ("REAL", "FAKE", "UNCERTAIN") for v in verdicts),
        latency_p50=p50,
        latency_p95=p95,
        latency_p99=p99,
        slo_breaches=int(np.sum(lat > slo_ms)),
        **(_labelled(outs, truth) if any(t is not None for t in truth) else {}),
    )


def compute_report(
    records: Sequence[Mapping[str, Any]],
    labels: Labels | None = None,
    *,
    slo_ms: float = 5000.0,
    skipped_lines: int = 0,
    invalid_records: int = 0,
) -> Report:
    truth = [labels.of(r) if labels else None for r in records]
    confusion = {b: dict.fromkeys(BANNERS, 0) for b in BANNERS}
    agree = compared = 0
    errors: dict[str, Counter[str]] = {p: Counter() for p in PATHS}
    for r in records:
        leg, ens = r["legacy"], r["ensemble"]
        confusion[leg.get("banner") or FAILED][ens.get("banner") or FAILED] += 1
        if leg.get("verdict") is not None and ens.get("verdict") is not None:
            compared += 1
            agree += leg["verdict"] == ens["verdict"]
        for p in PATHS:
            if r[p].get("error"):
                errors[p][str(r[p]["error"])] += 1
    return Report(
        records=len(records),
        skipped_lines=skipped_lines,
        compared=compared,
        agreement=_ratio(agree, compared),
        confusion=confusion,
        paths={p: _path_stats([r[p] for r in records], truth, slo_ms) for p in PATHS},
        slo_ms=slo_ms,
        labels_used=labels is not None,
        error_messages={p: dict(c.most_common(10)) for p, c in errors.items()},
        invalid_records=invalid_records,
    )
