"""`wma rollout report` on a small hand-computed case: numbers, gates, PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from wma_cli.main import main
from wma_fusion.rollout.config import RecordSink
from wma_fusion.rollout.records import PathOutcome, RecordWriter, build_record

KEY = "report-key"

# (participant, truth, legacy outcome, ensemble outcome); numbers worked out by hand below.
CASES = [
    (
        "p1",
        "real",
        PathOutcome("ok", 100, "REAL", "GREEN"),
        PathOutcome("ok", 200, "REAL", "GREEN"),
    ),
    ("p2", "fake", PathOutcome("ok", 150, "FAKE", "RED"), PathOutcome("ok", 300, "FAKE", "RED")),
    ("p3", "fake", PathOutcome("ok", 120, "REAL", "GREEN"), PathOutcome("ok", 6000, "FAKE", "RED")),
    (
        "p4",
        "real",
        PathOutcome("ok", 110, "UNCERTAIN", "YELLOW"),
        PathOutcome("ok", 250, "REAL", "GREEN"),
    ),
    (
        "p5",
        "real",
        PathOutcome("ok", 130, "FAKE", "RED"),
        PathOutcome("ok", 400, "UNCERTAIN", "YELLOW"),
    ),
    (
        "p6",
        "real",
        PathOutcome("timeout", 5000.5, error="legacy model timed out after 5.0 s"),
        PathOutcome("ok", 220, "REAL", "GREEN", degraded=True),
    ),
]


def _write_records(path: Path) -> None:
    sink = RecordSink(log=False, file=str(path), hash_key_env="K")
    writer = RecordWriter(sink, environ={"K": KEY})
    for pid, _truth, leg, ens in CASES:
        writer.write(
            build_record(
                writer.hasher,
                mode="shadow",
                served_by="legacy",
                participant_id=pid,
                meeting_id="m",
                num_frames=10,
                legacy=leg,
                ensemble=ens,
                config_sha256=None,
                calibrators_sha256=None,
            )
        )
    writer.close()


def _cli(argv: list[str]) -> int:
    return main(argv)  # the real ``wma`` entry point


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("K", KEY)
    records = tmp_path / "records.jsonl"
    _write_records(records)
    return records


def _labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text("participant_id,label\n" + "".join(f"{p},{t}\n" for p, t, _, _ in CASES))
    return path


def test_report_numbers_match_the_hand_computed_case(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = _cli(
        ["rollout", "report", str(recorded), "--labels", str(_labels(tmp_path)), "--out", str(out)]
        + ["--hash-key-env", "K"]
    )
    assert code == 0
    doc = json.loads((out / "report.json").read_text())
    # p6 has no legacy verdict: 5 compared, p1 and p2 agree.
    assert doc["records"] == 6 and doc["compared"] == 5
    assert doc["agreement"] == pytest.approx(2 / 5)
    conf = doc["confusion"]
    assert conf["GREEN"]["GREEN"] == 1 and conf["RED"]["RED"] == 1 and conf["GREEN"]["RED"] == 1
    assert conf["YELLOW"]["GREEN"] == 1 and conf["RED"]["YELLOW"] == 1
    assert conf["ERROR"]["GREEN"] == 1
    assert sum(sum(row.values()) for row in conf.values()) == 6
    ens, leg = doc["paths"]["ensemble"], doc["paths"]["legacy"]
    # ensemble latencies sorted: 200 220 250 300 400 6000 (numpy linear interpolation)
    assert ens["latency_p50"] == pytest.approx(275.0)
    assert ens["latency_p95"] == pytest.approx(400 + 0.75 * 5600)
    assert ens["latency_p99"] == pytest.approx(400 + 0.95 * 5600)
    assert (ens["slo_breaches"], leg["slo_breaches"]) == (1, 1)
    assert (ens["errors"], leg["errors"], ens["degraded"]) == (0, 1, 1)
    assert ens["uncertain_rate"] == pytest.approx(1 / 6)
    assert leg["uncertain_rate"] == pytest.approx(1 / 5)
    # labelled: ensemble certain on p1 p2 p3 p4 p6 all right; legacy misses p3, flags p5.
    assert (ens["tpr"], ens["fpr"], ens["accuracy"]) == (1.0, 0.0, 1.0)
    assert (leg["tpr"], leg["fpr"], leg["accuracy"]) == (0.5, 0.5, 0.5)
    assert ens["labelled_uncertain_rate"] == pytest.approx(1 / 6)
    assert leg["labelled_uncertain_rate"] == pytest.approx(1 / 5)
    gates = {g["name"]: g["status"] for g in doc["gates"]}
    assert list(gates.values()) == ["fails", "holds", "fails", "fails", "holds"]
    printed = capsys.readouterr().out
    assert "verdict agreement: 40.00 %" in printed
    assert "FAILING: verdict agreement >= 90 %" in printed
    assert "legacy model timed out" in printed


def test_report_pngs_open(recorded: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _cli(["rollout", "report", str(recorded), "--out", str(out)]) == 0
    for name in ("latency.png", "confusion.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] > 0 and img.size[1] > 0


def test_accuracy_gate_is_not_evaluated_without_labels(recorded: Path, tmp_path: Path) -> None:
    _cli(["rollout", "report", str(recorded), "--out", str(tmp_path / "o")])
    gates = json.loads((tmp_path / "o" / "report.json").read_text())["gates"]
    assert gates[-1]["status"] == "not evaluated"


def test_records_embedded_in_log_lines_are_read(recorded: Path, tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    lines = recorded.read_text().splitlines()
    log.write_text("starting up\n" + "".join(f"INFO wma.rollout.records: {ln}\n" for ln in lines))
    _cli(["rollout", "report", str(log), "--out", str(tmp_path / "o")])
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert (doc["records"], doc["skipped_lines"]) == (6, 1)


def test_raw_id_labels_without_the_hash_key_are_refused(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _cli(
        ["rollout", "report", str(recorded), "--labels", str(_labels(tmp_path))]
        + ["--hash-key-env", "UNSET_KEY_VAR", "--out", str(tmp_path / "o")]
    )
    assert code == 2
    assert "UNSET_KEY_VAR" in capsys.readouterr().err


def test_strict_mode_exits_1_when_a_gate_fails(recorded: Path, tmp_path: Path) -> None:
    assert _cli(["rollout", "report", str(recorded), "--strict", "--out", str(tmp_path)]) == 1


def test_no_records_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("nothing here\n")
    assert _cli(["rollout", "report", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no comparison records" in capsys.readouterr().err


def test_latency_bins_follow_the_data_not_the_slo() -> None:
    from wma_calibrators.rollout.report_render import latency_bins

    # refused calls at ~1 ms, answers at tens of ms, one timeout at 2 s; the SLO is 5 s
    values = [1.2, 1.3, 1.1] + [float(v) for v in range(20, 80, 3)] + [2000.0]
    bins = latency_bins(values)
    assert bins[0] <= min(values) and bins[-1] >= max(values) and bins[-1] < 5000
    filled = {sum(lo <= v < hi for v in values) for lo, hi in zip(bins, bins[1:], strict=False)}
    used = sum(any(lo <= v <= hi for v in values) for lo, hi in zip(bins, bins[1:], strict=False))
    assert used >= 8 and max(filled) < len(values) / 2


def test_records_with_an_unknown_banner_or_a_bad_latency_are_skipped_and_counted(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = recorded.read_text().splitlines()
    bad = []
    for field, value in [("latency_ms", "abc"), ("banner", "PURPLE"), ("status", [])]:
        record = json.loads(good[0])
        record["legacy"][field] = value
        bad.append(json.dumps(record))
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(good + bad) + "\n")
    assert _cli(["rollout", "report", str(mixed), "--out", str(tmp_path / "o")]) == 0
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert (doc["records"], doc["invalid_records"], doc["skipped_lines"]) == (6, 3, 0)
    captured = capsys.readouterr()
    assert "skipped 3 comparison record(s)" in captured.err
    assert "invalid records skipped: 3" in captured.out


@pytest.mark.parametrize("which", ["records", "labels"])
def test_a_file_that_is_not_utf8_is_a_clear_error(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00garbage\n")
    files = [str(binary)] if which == "records" else [str(recorded), "--labels", str(binary)]
    assert _cli(["rollout", "report", *files, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not UTF-8 text" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--slo-ms", "nan"], "--slo-ms must be a positive number"),
        (["--slo-ms", "-5"], "--slo-ms must be a positive number"),
        (["--uncertain-band", "0.04", "0.01"], "--uncertain-band LO HI"),
        (["--uncertain-band", "0.01", "2"], "--uncertain-band LO HI"),
        (["--out", "FILE"], "is a file, not a directory"),
    ],
)
def test_bad_options_are_one_error_line_and_exit_2(
    recorded: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    existing = tmp_path / "existing-file"
    existing.write_text("not a folder")
    options = [str(existing) if o == "FILE" else o for o in options]
    out = [] if "--out" in options else ["--out", str(tmp_path / "o")]
    assert _cli(["rollout", "report", str(recorded), *out, *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
