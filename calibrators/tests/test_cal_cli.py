"""``wma calibrate`` as a command: bad arguments, closed pipes, --help and synth's output."""

from __future__ import annotations

import argparse
import gzip
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from wma_calibrators.cli import register
from wma_calibrators.scores import read_table
from wma_cli.main import build_parser, main

CliResult = tuple[int, str, str]
MOCK = Path(__file__).resolve().parents[2] / "services" / "local" / "wma_local" / "mock.json"
ACTIONS = ("fit", "import-legacy", "report", "verify", "synth", "verdict-table", "simulate")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small inputs, good and bad, shared by the refusal cases below."""
    d = tmp_path_factory.mktemp("cli")
    rows = "".join(f"v{i},{i % 2},{0.2 + 0.6 * (i % 2)}\n" for i in range(40))
    (d / "wide.csv").write_text("video_id,label,9rfa62j1\n" + rows)
    one_class = "".join(f"v{i},1,0.{i + 1}\n" for i in range(9))
    (d / "one_class.csv").write_text("video_id,label,9rfa62j1\n" + one_class)
    (d / "empty.csv").write_text("")
    (d / "header_only.csv").write_text("video_id,label,9rfa62j1\n")
    (d / "corrupt.parquet").write_bytes(b"not a parquet file at all")
    whole = gzip.compress(("video_id,label,9rfa62j1\n" + rows).encode())
    (d / "truncated.csv.gz").write_bytes(whole[: len(whole) // 2])
    (d / "scores.txt").write_text("video_id,label,9rfa62j1\n" + rows)
    (d / "raises.pkl").write_bytes(b"N)R.")  # calls None(): TypeError while unpickling
    (d / "a_file").write_text("")
    (d / "a_dir").mkdir()
    return {p.name: p for p in d.iterdir()} | {"missing": d / "absent.csv", "dir": d}


# (argv after "calibrate", text the one error line must contain); NAME is replaced by
# the path of files[NAME], OUT by a fresh output path.
REFUSALS: list[tuple[tuple[str, ...], str]] = [
    (("synth", "--videos", "0", "--out", "OUT.csv"), "--videos must be in 2..100000"),
    (("synth", "--videos", "-5", "--out", "OUT.csv"), "--videos"),
    (("synth", "--videos", "1000001", "--out", "OUT.csv"), "--videos"),
    (("synth", "--seed", "-1", "--out", "OUT.csv"), "--seed must be in 0..4294967295"),
    (("synth", "--seed", "4294967296", "--out", "OUT.csv"), "--seed"),
    (("synth", "--videos", "10", "--out", "OUT.txt"), "must end in .csv or .parquet"),
    (("synth", "--videos", "10", "--out", "OUT"), "must end in .csv or .parquet"),
    (("synth", "--videos", "10", "--out", "missing/x.csv"), "does not exist"),
    (("fit", "wide.csv", "--out", "OUT.json", "--folds", "1"), "--folds must be at least 2"),
    (("fit", "wide.csv", "--out", "OUT.json", "--folds", "-3"), "--folds"),
    (("fit", "wide.csv", "--out", "OUT.json", "--folds", "25"), "25-fold"),
    (("fit", "wide.csv", "--out", "OUT.json", "--seed", "-1"), "--seed"),
    (("fit", "wide.csv", "--out", "OUT.json", "--uncertain-rate", "0"), "--uncertain-rate"),
    (("fit", "wide.csv", "--out", "OUT.json", "--uncertain-rate", "1"), "--uncertain-rate"),
    (("fit", "wide.csv", "--out", "OUT.json", "--uncertain-rate", "nan"), "--uncertain-rate"),
    (("fit", "wide.csv", "--out", "OUT.json", "--uncertain-rate", "-0.1"), "--uncertain-rate"),
    (("fit", "missing", "--out", "OUT.json"), "cannot read scores file"),
    (("fit", "corrupt.parquet", "--out", "OUT.json"), "cannot parse scores file"),
    (("fit", "empty.csv", "--out", "OUT.json"), "cannot parse scores file"),
    (("fit", "truncated.csv.gz", "--out", "OUT.json"), "cannot parse scores file"),
    (("fit", "header_only.csv", "--out", "OUT.json"), "no rows"),
    (("fit", "one_class.csv", "--out", "OUT.json"), "both labels"),
    (("fit", "scores.txt", "--out", "OUT.json"), "expected a file name ending in .csv"),
    (("fit", "wide.csv", "--out", "a_dir"), "is a directory"),
    (("fit", "wide.csv", "--out", "missing/b.json"), "does not exist"),
    (("import-legacy", "raises.pkl", "--out", "OUT.json"), "--trust-pickle"),
    (("import-legacy", "raises.pkl", "--trust-pickle", "--out", "OUT.json"), "TypeError"),
    (("import-legacy", "missing", "--trust-pickle", "--out", "OUT.json"), "cannot read"),
    (
        ("import-legacy", "raises.pkl", "--out", "OUT.json", "--t-low", "0.9", "--t-high", "0.5"),
        "--t-low/--t-high",
    ),
    (("import-legacy", "raises.pkl", "--out", "OUT.json", "--t-low", "nan"), "--t-low"),
    (("report", "missing", "--out", "OUT"), "cannot read"),
    (("report", "MOCK", "--out", "a_file"), "is a file, not a directory"),
    (("report", "MOCK", "--scores", "missing", "--out", "OUT"), "cannot read scores file"),
    (("report", "MOCK", "--scores", "one_class.csv", "--out", "OUT"), "both labels"),
    (("verify", "MOCK", "--sha256", "xyz"), "--sha256 must be 64 hex digits"),
    (("verify", "corrupt.parquet"), "not valid JSON"),
    (("verdict-table", "MOCK", "--bias", "nobody=0.1"), "not in the bundle: nobody"),
    (("verdict-table", "MOCK", "--bias", "9rfa62j1=nan"), "MODEL_ID=FLOAT"),
    (("verdict-table", "MOCK", "--bias", "=0.1"), "MODEL_ID=FLOAT"),
]


@pytest.mark.parametrize(("argv", "message"), REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_bad_arguments_and_inputs_are_one_error_line_and_exit_2(
    argv: tuple[str, ...],
    message: str,
    files: dict[str, Path],
    tmp_path: Path,
    wma: Callable[..., CliResult],
) -> None:
    def resolve(arg: str) -> str:
        if arg == "MOCK":
            return str(MOCK)
        if arg.startswith("OUT"):
            return str(tmp_path / ("result" + arg[3:]))
        if arg.startswith("missing/"):
            return str(tmp_path / arg)
        return str(files[arg]) if arg in files else arg

    code, stdout, err = wma("calibrate", *(resolve(a) for a in argv))
    assert code == 2, stdout + err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not any(p.name.startswith("result") for p in tmp_path.iterdir())


def test_malformed_source_date_epoch_is_an_error_not_a_crash(
    files: dict[str, Path],
    tmp_path: Path,
    wma: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    code, _, err = wma("calibrate", "fit", files["wide.csv"], "--out", tmp_path / "b.json")
    assert code == 2 and err.startswith("error: SOURCE_DATE_EPOCH") and err.count("\n") == 1


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_output_piped_into_a_reader_that_quits_stops_quietly(unbuffered: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    argv = [sys.executable, "-m", "wma_cli.main", "calibrate", "verify", str(MOCK)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head -0`: the reader is gone before the first line
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert err == ""


def _actions() -> dict[str, argparse.ArgumentParser]:
    """The parsers of ``wma calibrate ACTION``, registered on a bare parser."""
    root = argparse.ArgumentParser(prog="wma")
    register(root.add_subparsers())
    calibrate = root._subparsers._group_actions[0].choices["calibrate"]  # type: ignore[union-attr]
    return dict(calibrate._subparsers._group_actions[0].choices)


def test_every_subcommand_has_a_description_and_every_option_says_its_default() -> None:
    parsers = _actions()
    assert sorted(parsers) == sorted(ACTIONS)
    for name, parser in parsers.items():
        assert parser.description and len(parser.description) > 40, name
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            where = f"{name} {action.dest}"
            assert action.help, where
            is_flag = action.nargs == 0
            shows_default = "default" in action.help
            assert shows_default or action.required or is_flag or not action.option_strings, where
            assert action.option_strings or action.dest in ("scores", "pickle", "bundle"), where


def test_synth_help_shows_seed_and_videos_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["calibrate", "synth", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 7)" in text and "(default: 4000)" in text
    assert "For tests, demos" in text


def test_import_legacy_help_shows_the_product_thresholds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["calibrate", "import-legacy", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.9967)" in text and "(default: 0.998248)" in text


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_synth_writes_the_format_its_file_name_says(
    suffix: str, tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    out = tmp_path / f"s{suffix}"
    code, stdout, err = wma("calibrate", "synth", "--videos", "12", "--seed", "3", "--out", out)
    assert code == 0, err
    if suffix == ".parquet":
        assert out.read_bytes()[:4] == b"PAR1"
    df, _ = read_table(out)
    assert df["video_id"].nunique() == 12 and set(df["model_id"]) >= {"9rfa62j1"}
    assert "12 videos" in stdout


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("action", ["verify", "verdict-table"])
def test_every_calibrate_command_treats_a_closed_stdout_as_a_quiet_141(
    action: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["calibrate", action, str(MOCK)]) == 141
    assert capsys.readouterr().err == ""
