"""Hot reload as an operator sees it in the log and the reload counter.

A deleted config file keeps the loaded config serving, with one WARNING and one
failed reload (not silence, not one line per poll); a bundle-only change is
logged with the new bundle hash next to the unchanged config hash; a config that
names another bundle is one change, reloaded once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from wma_core import Thresholds
from wma_fusion.state import StateHolder, load_state
from wma_local.samples import write_synthetic_bundle

IDS = ("9rfa62j1", "1mjgo9w1")


def setup(tmp_path: Path) -> tuple[Path, Path]:
    bundle = tmp_path / "bundle.json"
    write_synthetic_bundle(bundle, IDS)
    doc = {
        "models": [{"id": mid, "endpoint": "http://127.0.0.1:9"} for mid in IDS],
        "calibrators": {"path": str(bundle)},
    }
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump(doc))
    return config, bundle


def test_a_deleted_config_is_warned_about_once_and_counted_as_a_failed_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, _ = setup(tmp_path)
    outcomes: list[bool] = []
    holder = StateHolder(load_state(config, {}), config, {}, on_reload=outcomes.append)
    first = holder.state
    text = config.read_text()
    config.unlink()
    with caplog.at_level(logging.WARNING, logger="wma_fusion.state"):
        assert holder.reload_if_changed() is False
        assert holder.reload_if_changed() is None  # still gone: no second line
    assert holder.state is first
    assert outcomes == [False]
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(config) in line and "gone" in line and "keeping" in line
    config.write_text(text)  # back again: loaded, and counted as a good reload
    assert holder.reload_if_changed() is True
    assert outcomes == [False, True]


def test_a_bundle_only_reload_logs_the_new_bundle_hash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, bundle = setup(tmp_path)
    holder = StateHolder(load_state(config, {}), config, {})
    old = holder.state
    write_synthetic_bundle(bundle, IDS, thresholds=Thresholds(0.2, 0.7))
    with caplog.at_level(logging.INFO, logger="wma_fusion.state"):
        assert holder.reload_if_changed() is True
    new = holder.state
    assert new.config_sha256 == old.config_sha256
    assert new.bundle.sha256 != old.bundle.sha256
    (line,) = [r.getMessage() for r in caplog.records if "loaded new config" in r.getMessage()]
    assert f"config sha256 {old.config_sha256[:12]}" in line
    assert f"calibrators sha256 {new.bundle.sha256[:12]}" in line


def test_a_config_that_names_another_bundle_is_reloaded_once(tmp_path: Path) -> None:
    config, _ = setup(tmp_path)
    outcomes: list[bool] = []
    holder = StateHolder(load_state(config, {}), config, {}, on_reload=outcomes.append)
    other = tmp_path / "other.json"
    write_synthetic_bundle(other, IDS, thresholds=Thresholds(0.2, 0.7))
    doc = yaml.safe_load(config.read_text())
    doc["calibrators"]["path"] = str(other)
    config.write_text(yaml.safe_dump(doc))
    assert holder.reload_if_changed() is True
    assert holder.state.config.calibrators.path == str(other)
    assert holder.reload_if_changed() is None  # the same files: no second reload
    assert outcomes == [True]
