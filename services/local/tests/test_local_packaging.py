"""What an installed (non-editable) package needs: demo frames and the mock bundle in the
wheel, a bundle lookup that needs no checkout.

The wheel is built from this checkout (``pip wheel --no-build-isolation``, so no
network); the bundle lookup of ``wma up``/``wma demo`` is exercised through the CLI.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import wma_local
from wma_local.stack import BUNDLE_ENV, DEFAULT_BUNDLE, StackError, resolve_bundle

REPO = Path(__file__).resolve().parents[3]
FRAMES = Path(wma_local.__file__).parent / "demo_frames"


@pytest.mark.slow
def test_the_wheel_ships_every_demo_frame(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation"]
        + ["-w", str(tmp_path), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("wma_ensemble-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"wma_local/{p.relative_to(FRAMES.parent)}" for p in FRAMES.rglob("*")}
    expected = {p for p in expected if p.endswith((".jpg", ".md"))}
    assert len([p for p in expected if p.endswith(".jpg")]) >= 4  # one participant at least
    assert expected <= shipped, sorted(expected - shipped)
    assert "wma_local/mock.json" in shipped  # wma up's default bundle, no checkout needed


def test_bundle_lookup_order_is_flag_then_env_then_the_shipped_mock_bundle(tmp_path: Path) -> None:
    flag, env_file = tmp_path / "flag.json", tmp_path / "env.json"
    flag.write_text("{}")
    env_file.write_text("{}")
    assert resolve_bundle(flag, {BUNDLE_ENV: str(env_file)}) == flag
    assert resolve_bundle(None, {BUNDLE_ENV: str(env_file)}) == env_file
    assert resolve_bundle(None, {}) == DEFAULT_BUNDLE
    assert DEFAULT_BUNDLE.is_file()


def test_a_missing_default_bundle_error_names_the_way_out(tmp_path: Path) -> None:
    missing = tmp_path / "site-packages" / "calibrators" / "mock.json"
    with pytest.raises(StackError, match=f"set {BUNDLE_ENV}.*--calibrators"):
        resolve_bundle(None, {}, default=missing)


def test_wma_up_with_a_missing_bundle_fails_clearly_without_starting_anything(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nope.json"
    done = subprocess.run(
        [sys.executable, "-m", "wma_cli.main", "up", "--calibrators", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"calibrator bundle {missing} not found" in done.stderr
    assert BUNDLE_ENV in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""  # no gateway URL printed: nothing was started
