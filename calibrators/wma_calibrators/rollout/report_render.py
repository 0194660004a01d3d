"""Rendering of a rollout report: text tables, a JSON summary and two PNGs.

Plots use matplotlib's object API on an Agg canvas (no pyplot global state, no
display needed): the latency distribution of both paths (log-spaced bins over the
data, with the SLO line where it falls inside them), and
the legacy x ensemble banner confusion matrix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wma_calibrators.rollout.gates import Gate, GateStatus, pct
from wma_calibrators.rollout.report import BANNERS, PATHS, Report


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def render_text(report: Report, gates: Sequence[Gate]) -> str:
    out = [
        f"records: {report.records} (other lines skipped: {report.skipped_lines}; "
        f"invalid records skipped: {report.invalid_records}); "
        f"both paths answered: {report.compared}",
        f"verdict agreement: {pct(report.agreement)}",
        "",
        "banner confusion (rows: legacy, columns: ensemble)",
        f"{'':>8}" + "".join(f"{b:>8}" for b in BANNERS),
    ]
    for row in BANNERS:
        out.append(f"{row:>8}" + "".join(f"{report.confusion[row][c]:>8}" for c in BANNERS))
    out += [
        "",
        f"{'path':<10}{'runs':>6}{'errors':>8}{'p50 ms':>10}{'p95 ms':>10}"
        f"{'p99 ms':>10}{'>SLO':>6}{'uncertain':>11}",
    ]
    for name in PATHS:
        s = report.paths[name]
        out.append(
            f"{name:<10}{s.runs:>6}{s.errors:>8}{_num(s.latency_p50):>10}"
            f"{_num(s.latency_p95):>10}{_num(s.latency_p99):>10}{s.slo_breaches:>6}"
            f"{pct(s.uncertain_rate):>11}"
        )
    if report.labels_used:
        out += [
            "",
            "on labelled requests (RED/FAKE = positive; TPR, FPR and accuracy on",
            "certain decisions; YELLOW/UNCERTAIN counted apart as the uncertain rate)",
            f"{'path':<10}{'labelled':>9}{'TPR':>10}{'FPR':>10}{'accuracy':>10}{'uncertain':>11}",
        ]
        for name in PATHS:
            s = report.paths[name]
            out.append(
                f"{name:<10}{s.labelled:>9}{pct(s.tpr):>10}{pct(s.fpr):>10}"
                f"{pct(s.accuracy):>10}{pct(s.labelled_uncertain_rate):>11}"
            )
    for name, messages in report.error_messages.items():
        for message, count in messages.items():
            out.append(f"error ({name}, {count}x): {message}")
    out += ["", "gates:"]
    out += [f"  [{g.status.value.upper():^13}] {g.name}: {g.detail}" for g in gates]
    failing = [g.name for g in gates if g.status is GateStatus.FAILS]
    open_ = [g.name for g in gates if g.status is GateStatus.NOT_EVALUATED]
    verdict = "all evaluated gates hold" if not failing else f"FAILING: {'; '.join(failing)}"
    out.append(f"summary: {verdict}" + (f"; not evaluated: {'; '.join(open_)}" if open_ else ""))
    return "\n".join(out)


def write_summary(report: Report, gates: Sequence[Gate], path: Path) -> Path:
    doc: dict[str, Any] = asdict(report)
    for name in PATHS:
        doc["paths"][name]["uncertain_rate"] = report.paths[name].uncertain_rate
    doc["gates"] = [{"name": g.name, "status": g.status.value, "detail": g.detail} for g in gates]
    path.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    return path


def latency_bins(values: Sequence[float], n: int = 40) -> list[float]:
    """Log-spaced bin edges from the smallest to the largest latency (ms).

    Latencies span decades (a refused call takes 1 ms, a timeout seconds), and a
    linear axis stretched to the SLO line put everything in its first bin.
    """
    positive = [v for v in values if v > 0]
    if not positive:
        return [0.0, 1.0]
    lo, hi = min(positive), max(positive)
    if hi < lo * 1.05:  # one value, or nearly: a small window around it
        lo, hi = lo / 1.1, hi * 1.1
    return [float(b) for b in np.geomspace(lo, hi, n + 1)]


def plot_latency(records: Sequence[Mapping[str, Any]], slo_ms: float, path: Path) -> Path:
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    series = {
        p: [float(r[p]["latency_ms"]) for r in records if r[p].get("latency_ms") is not None]
        for p in PATHS
    }
    bins = latency_bins([v for values in series.values() for v in values])
    for name, values in series.items():
        if values:
            clipped = np.clip(values, bins[0], bins[-1])  # a 0 ms value lands in the first bin
            ax.hist(clipped, bins=bins, alpha=0.6, label=f"{name} (n={len(values)})")
    ax.set_xscale("log")
    if bins[0] <= slo_ms <= bins[-1]:
        ax.axvline(slo_ms, color="red", linestyle="--", label=f"SLO {slo_ms:.0f} ms")
    else:
        side = "above" if slo_ms > bins[-1] else "below"
        ax.plot([], [], " ", label=f"SLO {slo_ms:.0f} ms ({side} every request)")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("requests")
    ax.set_title("Latency by path")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_confusion(report: Report, path: Path) -> Path:
    matrix = np.array([[report.confusion[r][c] for c in BANNERS] for r in BANNERS], dtype=float)
    fig = Figure(figsize=(5.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(len(BANNERS)), labels=list(BANNERS))
    ax.set_yticks(range(len(BANNERS)), labels=list(BANNERS))
    ax.set_xlabel("ensemble banner")
    ax.set_ylabel("legacy banner")
    ax.set_title("Banner confusion (legacy x ensemble)")
    threshold = matrix.max() / 2 if matrix.max() else 1.0
    for i in range(len(BANNERS)):
        for j in range(len(BANNERS)):
            color = "white" if matrix[i, j] > threshold else "black"
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", color=color)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
