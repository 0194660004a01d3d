"""Shared fixtures of the calibrator tests: the ``wma`` CLI and a small training set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from wma_calibrators.synthetic import synthetic_frames, write_frames
from wma_cli.main import main

CliResult = tuple[int, str, str]


@pytest.fixture
def wma(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``wma ARGS...`` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def small_training_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1500 synthetic videos, long layout, as CSV (seeded)."""
    path = tmp_path_factory.mktemp("scores") / "train.csv"
    write_frames(synthetic_frames(n_videos=1500, seed=11), path)
    return path
