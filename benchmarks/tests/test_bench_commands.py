"""The benchmark commands agree: docs/benchmarks.md, ``make bench`` and the scripts' docstrings.

A table in the doc is only reproducible if ``make bench`` runs the command the
doc says produced it, and the GPU command a script's docstring offers is the
one the doc explains.
"""

from __future__ import annotations

import re
from pathlib import Path

import e2e_bench
import gateway_bench
import model_server_bench
import peers_bench

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "benchmarks.md"


def _doc_commands() -> list[str]:
    """The ``Command:`` lines of the doc, as written."""
    return re.findall(r"^Command[^`]*`([^`]+)`", DOC.read_text(), re.MULTILINE)


def _bench_recipe() -> list[str]:
    """The ``make bench`` commands, with ``$(BIN)`` as the doc writes it (``.venv/bin``)."""
    makefile = (REPO / "Makefile").read_text()
    (recipe,) = re.findall(r"^bench:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    return [line.strip().replace("$(BIN)", ".venv/bin") for line in recipe.splitlines()]


def _one_line(block: str) -> str:
    return " ".join(block.replace("\\\n", " ").split())


SCRIPTS = {
    "benchmarks/e2e_bench.py": e2e_bench,
    "benchmarks/gateway_bench.py": gateway_bench,
    "benchmarks/peers_bench.py": peers_bench,
    "benchmarks/model_server_bench.py": model_server_bench,
}


def test_make_bench_runs_the_commands_the_doc_reports() -> None:
    commands = _doc_commands()
    # one per benchmark: end to end, gateway against a direct client, peers, model server
    assert sorted(c.split()[1] for c in commands) == sorted(SCRIPTS), commands
    assert _bench_recipe() == commands


def test_the_gpu_command_of_the_docstring_is_the_documented_one() -> None:
    (documented,) = re.findall(
        r"```\n(\.venv/bin/python[^`]+--effort-size full[^`]+)```", DOC.read_text()
    )
    doc = model_server_bench.__doc__ or ""
    (offered,) = re.findall(r"(\.venv/bin/python [^\n]+--effort-size full(?:.*\\\n)*.*)", doc)
    assert _one_line(offered) == _one_line(documented)
    assert "--max-queue-frames 512" in _one_line(offered)


def test_the_documented_commands_parse_with_the_scripts_own_parsers() -> None:
    parsers = {script: module.build_parser() for script, module in SCRIPTS.items()}
    parsed = {}
    for command in _doc_commands():
        python, script, *args = command.split()
        assert python == ".venv/bin/python"
        parsed[script] = parsers[script].parse_args(args)
    # The model-server tables compare torch's default thread count with one thread.
    assert parsed["benchmarks/model_server_bench.py"].cpu_threads == [0, 1]
    assert parsed["benchmarks/gateway_bench.py"].requests == 32
    # The load points: sequential, 8 and 32 participants; 1 and 8 clients.
    assert parsed["benchmarks/e2e_bench.py"].concurrency == [1, 8, 32]
    assert parsed["benchmarks/peers_bench.py"].concurrency == [1, 8]
