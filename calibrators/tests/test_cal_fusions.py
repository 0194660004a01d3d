"""``fit --fusion``: the three fusions side by side, the chosen one in the bundle;
older bundles (no ``fusion`` field) load unchanged and mean noisy-OR."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from wma_calibrators import dump_bundle, load_bundle
from wma_core import NOISY_OR

CliResult = tuple[int, str, str]
ROOT = Path(__file__).resolve().parents[2]
OLD_BUNDLES = [
    ROOT / "services" / "local" / "wma_local" / "mock.json",
    ROOT / "charts/wma-ensemble/files/mock.json",
]


@pytest.mark.parametrize("path", OLD_BUNDLES, ids=["calibrators", "chart"])
def test_a_bundle_without_the_fusion_field_loads_unchanged_as_noisy_or(
    path: Path, wma: Callable[..., CliResult]
) -> None:
    bundle = load_bundle(path)
    assert bundle.fusion == NOISY_OR
    assert dump_bundle(bundle) == path.read_bytes()  # written back byte for byte
    code, out, _ = wma("calibrate", "verify", path)
    assert code == 0 and "fusion noisy_or: 1 - prod(1 - p)" in out


@pytest.mark.parametrize("fusion", ["sum_logits", "stacked"])
def test_fit_records_the_chosen_fusion_and_compares_all_three(
    fusion: str, small_training_csv: Path, tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    out = tmp_path / "b.json"
    code, report, err = wma(
        "calibrate", "fit", small_training_csv, "--out", out, "--fusion", fusion
    )
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["fusion"]["kind"] == fusion and doc["fusion"]["eps"] == 1e-6
    assert doc["provenance"]["fit"]["fusion"] == fusion
    if fusion == "stacked":
        assert set(doc["fusion"]["weights"]) == set(doc["models"])
        assert all(w >= 0 for w in doc["fusion"]["weights"].values())
    rows = {line.split()[0]: line.split() for line in report.splitlines() if line.strip()}
    for kind in ("noisy_or", "sum_logits", "stacked"):
        assert kind in rows, report
    chosen = report.split("fusions compared")[1].splitlines()
    (mine,) = [line.split() for line in chosen if line.startswith(f"{fusion} *")]
    assert float(mine[3]) == pytest.approx(doc["thresholds"]["t_low"], abs=1e-6)
    assert float(mine[4]) == pytest.approx(doc["thresholds"]["t_high"], abs=1e-6)
    code, text, _ = wma("calibrate", "verify", out)
    assert code == 0 and f"fusion {fusion}: sigmoid(" in text
    code, text, _ = wma("calibrate", "report", out, "--out", tmp_path / "r")
    assert code == 0 and f"fusion {fusion}" in text
    code, text, _ = wma(
        "calibrate", "report", out, "--scores", small_training_csv, "--out", tmp_path / "r2"
    )
    assert (
        code == 0
        and f"fusion {fusion}" in text
        and f"fused ({load_bundle(out).fusion.label})" in text
    )


@pytest.mark.parametrize(
    ("fusion", "field"),
    [
        ({"kind": "max"}, "fusion.kind"),
        ({"kind": "sum_logits", "weights": {}}, "fusion.weights"),
        ({"kind": "sum_logits", "eps": 0.7}, "fusion.eps"),
        ({"kind": "stacked", "bias": 0.0, "weights": {"9rfa62j1": 1.0}}, "fusion.weights.1mjgo9w1"),
        (
            {
                "kind": "stacked",
                "bias": 0.0,
                "weights": dict.fromkeys(("9rfa62j1", "1mjgo9w1", "dfsesrgu"), 1.0)
                | {"4vtny88m": -0.1},
            },
            "fusion.weights.4vtny88m: must be >= 0",
        ),
    ],
)
def test_an_invalid_fusion_field_is_refused_naming_it(
    fusion: dict[str, object], field: str, tmp_path: Path, wma: Callable[..., CliResult]
) -> None:
    doc = json.loads(OLD_BUNDLES[0].read_text())
    doc["fusion"] = fusion
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc))
    code, _, err = wma("calibrate", "verify", path)
    assert code == 2 and err.startswith("error: invalid bundle: ") and field in err, err
