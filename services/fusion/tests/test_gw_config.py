"""The gateway config: strict validation at start, env overrides, hot reload."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from wma_fusion.config import GatewayConfig, read_config
from wma_fusion.errors import ConfigError
from wma_fusion.state import StateHolder, load_state
from wma_local.samples import write_synthetic_bundle

IDS = ("9rfa62j1", "1mjgo9w1", "dfsesrgu", "4vtny88m")


@pytest.fixture
def bundle_sha(tmp_path: Path) -> str:
    return write_synthetic_bundle(tmp_path / "bundle.json", IDS)


def base_doc() -> dict[str, Any]:
    return {
        "models": [
            {"id": mid, "endpoint": f"http://127.0.0.1:{9001 + i}"} for i, mid in enumerate(IDS)
        ],
        "calibrators": {"path": "bundle.json"},
    }


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_defaults_fill_every_optional_section(tmp_path: Path, bundle_sha: str) -> None:
    state = load_state(write(tmp_path, base_doc()), env={})
    config: GatewayConfig = state.config
    assert [m.protocol for m in config.models] == ["oip"] * 4
    assert config.models[0].timeout_s == 4.0
    assert config.fanout.deadline_s == 4.5 and config.fanout.connect_retries == 1
    assert config.limits.max_files == 64
    assert config.rollout.mode == "ensemble"
    assert Path(config.calibrators.path) == tmp_path / "bundle.json"
    assert state.thresholds_source == "bundle"
    assert [m.aggregator.name for m in state.members] == ["topk4", "softmax_b5", "topk4", "topk4"]
    assert state.bundle.sha256 == bundle_sha


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node: Any = doc
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value


@pytest.mark.parametrize(
    ("dotted", "value", "field"),
    [
        ("models.1.endpoint", "not a url", "models.1.endpoint"),
        ("models.2.protocol", "grpc", "models.2.protocol"),
        ("models.0.timeout_s", 0, "models.0.timeout_s"),
        ("models.0.colour", "red", "models.0.colour"),
        ("models.3.id", "9rfa62j1", "models"),
        ("models.1.aggregator", "topk4", "models.1.aggregator"),
        ("models.0.aggregator", "nonsense", "models.0.aggregator"),
        ("models.2.id", "unknownmodel", "models.2.id"),
        ("calibrators.path", "missing.json", "calibrators.path"),
        ("calibrators.sha256", "0" * 64, "calibrators.sha256"),
        ("calibrators.sha256", "xyz", "calibrators.sha256"),
        ("thresholds", {"t_low": 0.9, "t_high": 0.8}, "thresholds"),
        ("fanout.connect_retries", 2, "fanout.connect_retries"),
        ("fanout.deadline_s", -1, "fanout.deadline_s"),
        ("fanout.breaker.failure_threshold", 0, "fanout.breaker.failure_threshold"),
        ("limits.max_files", 0, "limits.max_files"),
        ("telemetry.traces_exporter", "zipkin", "telemetry.traces_exporter"),
        ("reload.interval_s", 0, "reload.interval_s"),
        ("rollout.mode", "canary", "rollout"),
        ("surprise", 1, "surprise"),
    ],
)
def test_invalid_config_is_refused_naming_the_field(
    tmp_path: Path, bundle_sha: str, dotted: str, value: Any, field: str
) -> None:
    doc = base_doc()
    _set(doc, dotted, value)
    with pytest.raises(ConfigError) as info:
        load_state(write(tmp_path, doc), env={})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_empty_model_list_and_missing_calibrators_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^models: "):
        read_config(write(tmp_path, {"models": [], "calibrators": {"path": "b.json"}}), env={})
    with pytest.raises(ConfigError, match=r"^calibrators: "):
        read_config(write(tmp_path, {"models": base_doc()["models"]}), env={})
    (tmp_path / "gateway.yaml").write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_config(tmp_path / "gateway.yaml", env={})


def test_pinned_sha_and_explicit_thresholds_are_used(tmp_path: Path, bundle_sha: str) -> None:
    doc = base_doc()
    doc["calibrators"]["sha256"] = bundle_sha.upper()
    doc["thresholds"] = {"t_low": 0.5, "t_high": 0.6}
    state = load_state(write(tmp_path, doc), env={})
    assert (state.thresholds.t_low, state.thresholds.t_high) == (0.5, 0.6)
    assert state.thresholds_source == "config"


def test_env_overrides_endpoints_calibrators_and_rollout(tmp_path: Path, bundle_sha: str) -> None:
    other = tmp_path / "other"
    other.mkdir()
    write_synthetic_bundle(other / "b2.json", IDS)
    env = {
        "MODEL1_HOST": "10.0.0.7",
        "MODEL1_PORT": "8999",
        "MODEL3_PORT": "7000",
        "CALIBRATORS_PATH": str(other / "b2.json"),
        "WMA_ROLLOUT_MODE": "shadow",  # not the default, so the override is seen
        "WMA_CANARY_PERCENT": "25",
    }
    doc = base_doc()
    doc["rollout"] = {"legacy": {"endpoint": "http://127.0.0.1:9000"}}
    config, _ = read_config(write(tmp_path, doc), env=env)
    assert config.rollout.mode == "shadow"
    assert config.models[0].base_url == "http://10.0.0.7:8999"
    assert config.models[2].base_url == "http://127.0.0.1:7000"
    assert config.models[1].base_url == "http://127.0.0.1:9002"
    assert config.calibrators.path == str(other / "b2.json")
    assert config.rollout.canary_percent == 25.0
    with pytest.raises(ConfigError, match=r"^MODEL5_HOST: "):
        read_config(write(tmp_path, base_doc()), env={"MODEL5_HOST": "x"})
    with pytest.raises(ConfigError, match=r"^MODEL2_PORT: "):
        read_config(write(tmp_path, base_doc()), env={"MODEL2_PORT": "http"})


def test_relative_calibrators_path_env_is_relative_to_the_working_directory(
    tmp_path: Path, bundle_sha: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    (cwd / "calibrators").mkdir(parents=True)
    write_synthetic_bundle(cwd / "calibrators" / "b3.json", IDS)
    config_dir = tmp_path / "elsewhere"
    config_dir.mkdir()
    monkeypatch.chdir(cwd)
    state = load_state(
        write(config_dir, base_doc()), env={"CALIBRATORS_PATH": "calibrators/b3.json"}
    )
    assert Path(state.config.calibrators.path) == cwd / "calibrators" / "b3.json"


def test_hot_reload_takes_valid_files_and_refuses_invalid_ones(
    tmp_path: Path, bundle_sha: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, base_doc())
    outcomes: list[bool] = []
    holder = StateHolder(load_state(path, env={}), path, env={}, on_reload=outcomes.append)
    first = holder.state
    assert holder.reload_if_changed() is None  # unchanged content: nothing happens

    bad = base_doc()
    bad["models"][1]["endpoint"] = "ftp//nope"
    write(tmp_path, bad)
    with caplog.at_level(logging.WARNING, logger="wma_fusion.state"):
        assert holder.reload_if_changed() is False
    assert holder.state is first
    assert "models.1.endpoint" in caplog.text and "Traceback" not in caplog.text

    good = base_doc()
    good["thresholds"] = {"t_low": 0.4, "t_high": 0.7}
    good["models"][2]["endpoint"] = "http://127.0.0.1:9999"
    write(tmp_path, good)
    assert holder.reload_if_changed() is True
    assert holder.state.thresholds_source == "config"
    assert holder.state.members[2].entry.base_url == "http://127.0.0.1:9999"
    # breakers survive a reload for unchanged endpoints, restart for moved ones
    assert holder.state.members[0].replicas is first.members[0].replicas
    assert holder.state.members[2].replicas is not first.members[2].replicas
    assert outcomes == [False, True]
