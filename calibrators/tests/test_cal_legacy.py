"""``wma calibrate import-legacy``: pickles are refused unless trusted, then converted exactly."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from wma_calibrators import load_bundle

CliResult = tuple[int, str, str]


def fitted(seed: int) -> IsotonicRegression:
    rng = np.random.default_rng(seed)
    x = rng.random(400)
    y = (rng.random(400) < x**2).astype(float)
    return IsotonicRegression(out_of_bounds="clip").fit(x, y)


@pytest.fixture
def legacy_pickle(tmp_path: Path) -> tuple[Path, dict[str, IsotonicRegression]]:
    models = {"9rfa62j1": fitted(1), "1mjgo9w1": fitted(2), "dfsesrgu": fitted(3)}
    path = tmp_path / "calibrators.pkl"
    path.write_bytes(pickle.dumps(models))
    return path, models


class _Payload:
    """Unpickling this creates a marker directory: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_pickle_is_refused_without_trust_and_never_unpickled(
    tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"9rfa62j1": _Payload(marker)}))
    out = tmp_path / "out.json"
    code, stdout, err = wma("calibrate", "import-legacy", evil, "--out", out)
    assert code == 2
    assert "runs arbitrary code" in err and "--trust-pickle" in err
    assert not marker.exists() and not out.exists()
    # The same file, trusted, does run its code: the refusal above is what protected us.
    wma("calibrate", "import-legacy", evil, "--out", out, "--trust-pickle")
    assert marker.is_dir()


def test_trusted_pickle_becomes_a_bundle_that_predicts_identically(
    legacy_pickle: tuple[Path, dict[str, IsotonicRegression]],
    tmp_path: Path,
    wma: Callable[..., CliResult],
) -> None:
    path, models = legacy_pickle
    out = tmp_path / "bundle.json"
    code, stdout, err = wma("calibrate", "import-legacy", path, "--out", out, "--trust-pickle")
    assert code == 0, err
    assert "3 model(s)" in stdout
    bundle = load_bundle(out)
    grid = np.concatenate([np.linspace(-0.5, 1.5, 2001), models["9rfa62j1"].X_thresholds_])
    for model_id, model in models.items():
        np.testing.assert_allclose(
            bundle.models[model_id].curve.predict(grid), model.predict(grid), rtol=0, atol=1e-12
        )
    assert bundle.models["1mjgo9w1"].aggregator == "softmax_b5"
    assert bundle.models["9rfa62j1"].aggregator == "topk4"
    assert (bundle.thresholds.t_low, bundle.thresholds.t_high) == (0.996700, 0.998248)
    assert "legacy pickle" in bundle.provenance["method"]


def test_thresholds_and_aggregators_can_be_given(
    tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    path = tmp_path / "one.pkl"
    path.write_bytes(pickle.dumps({"newmodel": fitted(4)}))
    out = tmp_path / "bundle.json"
    code, _, err = wma("calibrate", "import-legacy", path, "--out", out, "--trust-pickle")
    assert code == 2 and "no aggregator for model 'newmodel'" in err
    args = ("--aggregator", "newmodel=topk8", "--t-low", "0.9", "--t-high", "0.95")
    code, _, err = wma("calibrate", "import-legacy", path, "--out", out, "--trust-pickle", *args)
    assert code == 0, err
    bundle = load_bundle(out)
    assert bundle.models["newmodel"].aggregator == "topk8"
    assert (bundle.thresholds.t_low, bundle.thresholds.t_high) == (0.9, 0.95)
    code, _, err = wma(
        "calibrate",
        "import-legacy",
        path,
        "--out",
        out,
        "--trust-pickle",
        *args[:2],
        "--t-low",
        "0.99",
        "--t-high",
        "0.9",
    )
    assert code == 2 and "t_low < t_high" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (["not", "a", "dict"], "non-empty dict"),
        ({"9rfa62j1": "string"}, "not a fitted IsotonicRegression"),
        ({"9rfa62j1": IsotonicRegression()}, "not a fitted IsotonicRegression"),
        ({3: "x"}, "is not a string"),
    ],
)
def test_trusted_pickle_of_the_wrong_shape_is_refused(
    content: object, message: str, tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(content))
    code, _, err = wma(
        "calibrate", "import-legacy", path, "--out", tmp_path / "o.json", "--trust-pickle"
    )
    assert code == 2 and message in err


def test_non_clipping_calibrator_is_refused(tmp_path: Path, wma: Callable[..., CliResult]) -> None:
    model = IsotonicRegression(out_of_bounds="nan").fit([0.1, 0.5, 0.9], [0, 0, 1])
    path = tmp_path / "nan.pkl"
    path.write_bytes(pickle.dumps({"9rfa62j1": model}))
    code, _, err = wma(
        "calibrate", "import-legacy", path, "--out", tmp_path / "o.json", "--trust-pickle"
    )
    assert code == 2 and "out_of_bounds='nan'" in err
