"""``wma analyze`` and friends as a user types them: help, usage errors, ids, pipes.

The gateway here is real (a thread on loopback, one in-process mock member); usage
errors must be one ``wma analyze: error: ...`` line with exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from wma_cli.main import build_parser, main
from wma_fusion.app import create_app
from wma_local.samples import grey_frame
from wma_local.stack import DEFAULT_BUNDLE, GatewayThread, free_port

MEMBER = "9rfa62j1"
COMMANDS = (("gateway",), ("up",), ("analyze",), ("demo",), ("rollout", "report"))


def subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_gateway_command_has_a_description_and_every_option_a_help_with_its_default(
    command: tuple[str, ...],
) -> None:
    parser = subparser(build_parser(), *command)
    assert parser.description, command
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        assert action.help, action.option_strings
        flag_only = isinstance(action, argparse._StoreTrueAction)
        if not action.required and not flag_only:
            assert "default" in action.help, action.option_strings


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, mock_member: str) -> Iterator[str]:
    config = tmp_path_factory.mktemp("gw") / "gw.yaml"
    doc = {
        "models": [{"id": MEMBER, "endpoint": mock_member}],
        "calibrators": {"path": str(DEFAULT_BUNDLE)},
        "reload": {"enabled": False},
    }
    config.write_text(yaml.safe_dump(doc))
    server = GatewayThread(create_app(config)).start()
    yield server.url
    server.stop()


@pytest.fixture
def crops(tmp_path: Path) -> Path:
    directory = tmp_path / "Erin's crops"
    directory.mkdir()
    for i in range(3):
        (directory / f"f{i}.png").write_bytes(grey_frame(100 + i))
    return directory


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"http://127.0.0.1:{free_port()}", "cannot reach the gateway at http://127.0.0.1:"),
        ("127.0.0.1:18080", "is not an http(s) URL"),
        ("ftp://127.0.0.1:18080", "is not an http(s) URL"),
    ],
)
def test_a_bad_or_unreachable_gateway_is_one_error_line_with_exit_2(
    crops: Path, url: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--image-dir", str(crops), "--gateway", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wma analyze: error: ") and problem in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_num_frames_below_one_is_a_usage_error(
    crops: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--image-dir", str(crops), "--num-frames", "0"])
    assert exit_info.value.code == 2
    assert "--num-frames: must be at least 1 (got 0)" in capsys.readouterr().err


def test_the_participant_id_defaults_to_the_directory_name_and_can_be_set(
    gateway: str, crops: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["analyze", "--image-dir", str(crops), "--gateway", gateway]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["participant_id"] == "Erin-s-crops"
    assert main([*args, "--participant-id", "erin@m1", "--num-frames", "2"]) == 0
    assert capsys.readouterr().out.startswith("participant erin@m1: 2 frames\n")
    assert main([*args, "--participant-id", "erin m1"]) == 2
    assert "--participant-id must be" in capsys.readouterr().err


def test_a_closed_stdout_pipe_ends_quietly(gateway: str, crops: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `wma analyze ... | head` once head has exited
    try:
        done = subprocess.run(
            [sys.executable, "-m", "wma_cli.main", "analyze", "--image-dir", str(crops)]
            + ["--gateway", gateway, "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_an_unknown_gateway_log_level_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["gateway", "--config", str(tmp_path / "gw.yaml"), "--log-level", "loud"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--log-level: invalid choice: 'loud'" in err and "Traceback" not in err
