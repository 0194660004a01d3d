"""Synthetic frames and a synthetic calibrator bundle for tests, benchmarks and checks.

The mock model server scores a uniform frame of grey level ``v`` as ``v / 255``
(plus its bias), so :func:`grey_frame` lets a caller choose each frame's score.
PNG is lossless, so the level survives encoding exactly. :func:`truncated_frame`
is a JPEG that passes the format and header checks but cannot be decoded: the model
server reports it unscored, which is how a test produces "no frame scored".
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from PIL import Image
from wma_core import IsotonicCurve, Thresholds
from wma_core.bundle import CalibratorBundle, ModelCalibrator, write_bundle


def grey_frame(level: int, size: int = 16, fmt: str = "PNG") -> bytes:
    """An encoded uniform RGB frame of grey ``level`` (0-255)."""
    out = io.BytesIO()
    Image.new("RGB", (size, size), (level, level, level)).save(out, format=fmt)
    return out.getvalue()


def truncated_frame(size: int = 64) -> bytes:
    """A JPEG whose header is intact but whose scan data is cut off."""
    out = io.BytesIO()
    Image.effect_noise((size, size), 64).convert("RGB").save(out, format="JPEG", quality=90)
    data = out.getvalue()
    return data[: max(len(data) // 3, 700)]


def synthetic_bundle(
    model_ids: Iterable[str],
    *,
    aggregators: dict[str, str] | None = None,
    thresholds: Thresholds | None = None,
    y_max: float = 0.9,
) -> CalibratorBundle:
    """A bundle whose curves map a score ``p`` to about ``y_max * p`` (piecewise)."""
    aggregators = aggregators or {}
    models = {
        mid: ModelCalibrator(
            aggregators.get(mid, "softmax_b5" if mid == "1mjgo9w1" else "topk4"),
            IsotonicCurve.from_points([0.0, 0.5, 1.0], [0.0, 0.5 * y_max, y_max]),
        )
        for mid in model_ids
    }
    return CalibratorBundle(thresholds or Thresholds(), models, {"source": "synthetic"})


def write_synthetic_bundle(
    path: Path, model_ids: Iterable[str], *, thresholds: Thresholds | None = None
) -> str:
    """Write :func:`synthetic_bundle` to ``path``; returns the file's sha256."""
    sha256: str = write_bundle(synthetic_bundle(model_ids, thresholds=thresholds), path)
    return sha256
