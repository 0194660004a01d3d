"""The chart never pairs real detectors with mock calibrators, and says which thresholds run.

With the effort backend the install needs the production bundle (``calibrators.bundle``,
or an existing ConfigMap/Secret with its sha256); the gateway ConfigMap names the
thresholds in force and pins the bundle's sha256. One test makes the bundle with the
real ``wma calibrate import-legacy`` and renders the chart with it.
"""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import numpy as np
import pytest
import yaml
from chart_render import (
    FULLNAME,
    KIND_VALUES,
    NAMESPACE,
    PRODUCTION_VALUES,
    RELEASE,
    Manifests,
    RenderFn,
    load_values,
)
from sklearn.isotonic import IsotonicRegression

WMA = Path(sys.executable).with_name("wma")
MODEL_IDS = ("9rfa62j1", "1mjgo9w1", "dfsesrgu", "4vtny88m")
SHA = "AB" * 32
REFERENCE_THRESHOLDS = {"t_low": 0.996700, "t_high": 0.998248}


def _refusal(chart: Any, values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmRenderError) as caught:
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return str(caught.value)


def _annotations(manifests: Manifests, track: str = "stable") -> dict[str, str]:
    suffix = "gateway" if track == "stable" else f"gateway-{track}"
    annotations: dict[str, str] = manifests.get("ConfigMap", f"{FULLNAME}-{suffix}")["metadata"][
        "annotations"
    ]
    return annotations


def _bundle_volume_source(manifests: Manifests) -> dict[str, Any]:
    deployment = manifests.get("Deployment", f"{FULLNAME}-gateway")
    (config,) = [
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"
    ]
    (source,) = [
        s
        for s in config["projected"]["sources"]
        if any(i["path"] == "calibrators/bundle.json" for i in next(iter(s.values()))["items"])
    ]
    return source


def test_default_values_without_a_bundle_are_refused_naming_calibrators_bundle(chart: Any) -> None:
    message = _refusal(chart, {})
    assert "calibrators.bundle:" in message
    for name in ("--set-file calibrators.bundle=", "existingConfigMap", "existingSecret", "sha256"):
        assert name in message, message
    assert "models 9rfa62j1, 1mjgo9w1, dfsesrgu, 4vtny88m run the effort backend" in message


def test_one_model_overridden_to_effort_needs_the_bundle_too(chart: Any, render: RenderFn) -> None:
    models = [{"id": m} | ({"backend": "effort"} if m == "dfsesrgu" else {}) for m in MODEL_IDS]
    message = _refusal(chart, load_values(KIND_VALUES, overrides={"models": models}))
    assert "calibrators.bundle: models dfsesrgu run the effort backend" in message
    # Mock model servers only (the kind values): the chart's mock bundle is fine.
    assert _annotations(render(KIND_VALUES))["wma.io/bundle-source"] == "mock"


def test_the_mock_bundle_passed_as_the_production_bundle_is_refused(
    chart: Any, render: RenderFn
) -> None:
    mock = render(KIND_VALUES).bundle_bytes().decode()
    message = _refusal(chart, {"calibrators": {"bundle": mock}})
    assert "calibrators.bundle: this is the chart's mock bundle" in message
    assert "effort backend" in message


@pytest.mark.parametrize(
    ("calibrators", "expected"),
    [
        ({"existingConfigMap": "wma-bundle"}, "calibrators.sha256: required with calibrators.exis"),
        ({"existingSecret": "wma-bundle"}, "calibrators.sha256: required with calibrators.exis"),
        (
            {"existingSecret": "wma-bundle", "sha256": SHA},
            "gateway.config.thresholds: required with calibrators.existingSecret",
        ),
        (
            {"existingSecret": "a", "existingConfigMap": "b", "sha256": SHA},
            "set only one of calibrators.bundle, calibrators.existingConfigMap",
        ),
    ],
)
def test_a_referenced_bundle_needs_its_sha256_and_thresholds(
    chart: Any, calibrators: dict[str, str], expected: str
) -> None:
    assert expected in _refusal(chart, {"calibrators": calibrators})


@pytest.mark.parametrize("kind", ["ConfigMap", "Secret"])
def test_a_referenced_bundle_is_mounted_and_pinned_with_the_given_thresholds(
    render: RenderFn, kind: str
) -> None:
    values = {
        "calibrators": {f"existing{kind}": "prod-bundle", "key": "prod.json", "sha256": SHA},
        "gateway": {"config": {"thresholds": REFERENCE_THRESHOLDS}},
    }
    manifests = render(overrides=values)
    assert not [
        c for c in manifests.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-calibrators")
    ]
    source = _bundle_volume_source(manifests)
    field = "configMap" if kind == "ConfigMap" else "secret"
    assert source == {
        field: {
            "name": "prod-bundle",
            "items": [{"key": "prod.json", "path": "calibrators/bundle.json"}],
        }
    }
    assert manifests.gateway_config()["calibrators"]["sha256"] == SHA.lower()
    annotations = _annotations(manifests)
    assert annotations["wma.io/bundle-sha256"] == SHA.lower()
    assert annotations["wma.io/thresholds-from"] == "config"
    assert float(annotations["wma.io/t-low"]) == 0.9967
    assert float(annotations["wma.io/t-high"]) == 0.998248


def test_a_bundle_that_does_not_fit_the_models_is_refused(chart: Any) -> None:
    bundle = yaml.safe_load(PRODUCTION_VALUES.read_text())["calibrators"]["bundle"]
    values = {"calibrators": {"bundle": bundle}}
    extra = [{"id": m} for m in MODEL_IDS] + [{"id": "newmodel", "aggregator": "topk4"}]
    message = _refusal(chart, values | {"models": extra})
    assert 'calibrators.bundle: has no calibrator for model "newmodel"' in message
    other = [{"id": m, "aggregator": "topk8" if m == "9rfa62j1" else None} for m in MODEL_IDS]
    other = [{k: v for k, v in m.items() if v is not None} for m in other]
    message = _refusal(chart, values | {"models": other})
    assert 'models[9rfa62j1].aggregator: "topk8" differs from the bundle\'s "topk4"' in message
    message = _refusal(chart, {"calibrators": {"bundle": "{not json"}})
    assert "calibrators.bundle: not a calibrator bundle" in message


@pytest.fixture(scope="module")
def legacy_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle for the four product models made by the real ``wma calibrate import-legacy``."""
    work = tmp_path_factory.mktemp("legacy")
    models = {}
    for seed, model_id in enumerate(MODEL_IDS, start=1):
        rng = np.random.default_rng(seed)
        x = rng.random(200)
        models[model_id] = IsotonicRegression(out_of_bounds="clip").fit(
            x, (rng.random(200) < x**2).astype(float)
        )
    legacy = work / "calibrators.pkl"
    legacy.write_bytes(pickle.dumps(models))
    out = work / "bundle.json"
    result = subprocess.run(
        [str(WMA), "calibrate", "import-legacy", str(legacy), "--out", str(out), "--trust-pickle"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_import_legacy_bundle_renders_the_product_thresholds_and_pins_its_sha256(
    render: RenderFn, legacy_bundle: Path, tmp_path: Path
) -> None:
    from wma_fusion.config import parse_config
    from wma_fusion.state import build_state

    data = legacy_bundle.read_bytes()
    manifests = render(overrides={"calibrators": {"bundle": data.decode()}})
    annotations = _annotations(manifests)
    assert float(annotations["wma.io/t-low"]) == 0.996700
    assert float(annotations["wma.io/t-high"]) == 0.998248
    assert annotations["wma.io/thresholds-from"] == "bundle"
    sha = hashlib.sha256(data).hexdigest()
    assert annotations["wma.io/bundle-sha256"] == sha
    assert manifests.gateway_config()["calibrators"]["sha256"] == sha
    assert manifests.bundle_bytes() == data

    # The gateway, given the rendered files, runs with exactly these thresholds.
    (tmp_path / "calibrators").mkdir()
    (tmp_path / "calibrators" / "bundle.json").write_bytes(manifests.bundle_bytes())
    text = yaml.safe_dump(manifests.gateway_config())
    state = build_state(parse_config(text, base_dir=tmp_path, env={}))
    assert (state.thresholds.t_low, state.thresholds.t_high) == (0.996700, 0.998248)
    assert state.thresholds_source == annotations["wma.io/thresholds-from"]


@pytest.mark.slow
def test_a_stacked_fusion_bundle_ships_unchanged_and_the_gateway_fuses_with_it(
    render: RenderFn, tmp_path: Path
) -> None:
    """A bundle with the optional ``fusion`` field, made by the real ``wma calibrate fit``."""
    from wma_fusion.config import parse_config
    from wma_fusion.state import build_state

    train, bundle = tmp_path / "train.csv", tmp_path / "stacked.json"
    for argv in (
        ["synth", "--seed", "7", "--out", str(train)],
        ["fit", str(train), "--fusion", "stacked", "--out", str(bundle)],
    ):
        result = subprocess.run(
            [str(WMA), "calibrate", *argv], capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stderr
    data = bundle.read_bytes()
    doc = yaml.safe_load(data)
    assert doc["fusion"]["kind"] == "stacked"
    manifests = render(overrides={"calibrators": {"bundle": data.decode()}})
    assert manifests.bundle_bytes() == data
    annotations = _annotations(manifests)
    assert annotations["wma.io/bundle-sha256"] == hashlib.sha256(data).hexdigest()
    assert float(annotations["wma.io/t-low"]) == doc["thresholds"]["t_low"]
    assert float(annotations["wma.io/t-high"]) == doc["thresholds"]["t_high"]

    (tmp_path / "calibrators").mkdir()
    (tmp_path / "calibrators" / "bundle.json").write_bytes(manifests.bundle_bytes())
    text = yaml.safe_dump(manifests.gateway_config())
    state = build_state(parse_config(text, base_dir=tmp_path, env={}))
    assert state.bundle.fusion.kind == "stacked"
    assert state.bundle.fusion.weights == doc["fusion"]["weights"]


def test_thresholds_from_values_are_the_ones_annotated_per_track(render: RenderFn) -> None:
    canary_band = {"t_low": 0.99, "t_high": 0.995}
    manifests = render(
        PRODUCTION_VALUES,
        overrides={"canary": {"enabled": True, "config": {"thresholds": canary_band}}},
    )
    stable, canary = _annotations(manifests), _annotations(manifests, "canary")
    assert (stable["wma.io/thresholds-from"], canary["wma.io/thresholds-from"]) == (
        "bundle",
        "config",
    )
    assert (float(canary["wma.io/t-low"]), float(canary["wma.io/t-high"])) == (0.99, 0.995)
    assert manifests.gateway_config("canary")["thresholds"] == canary_band
    assert stable["wma.io/bundle-sha256"] == canary["wma.io/bundle-sha256"]
