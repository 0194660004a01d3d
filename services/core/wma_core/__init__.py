"""The fusion core: pure functions on numpy arrays, no I/O.

Every number a user sees (aggregated, calibrated and fused scores, verdict,
confidence label, banner) is computed here and only here; the gateway, the
calibrator tool and the CLI all import it.
"""

from wma_core.aggregate import (
    VALID_FORMS,
    Aggregator,
    AggregatorError,
    aggregate,
    parse_aggregator,
    softmax_pool,
    topk_mean,
)
from wma_core.calibration import IsotonicCurve
from wma_core.fusion import FusedScore, fuse, is_degraded
from wma_core.fusion_rules import FUSION_KINDS, NOISY_OR, FusionRule, logit, noisy_or, sigmoid
from wma_core.status import FAILED_STATUSES, MemberStatus
from wma_core.verdict import (
    BANNER_RANK,
    T_HIGH_DEFAULT,
    T_LOW_DEFAULT,
    Banner,
    Confidence,
    Decision,
    Thresholds,
    Verdict,
    banner_for,
    confidence_label,
    decide,
    legacy_banner,
    verdict_for_interval,
    verdict_for_score,
)

__all__ = [
    "BANNER_RANK",
    "FAILED_STATUSES",
    "FUSION_KINDS",
    "NOISY_OR",
    "T_HIGH_DEFAULT",
    "T_LOW_DEFAULT",
    "VALID_FORMS",
    "Aggregator",
    "AggregatorError",
    "Banner",
    "Confidence",
    "Decision",
    "FusedScore",
    "FusionRule",
    "IsotonicCurve",
    "MemberStatus",
    "Thresholds",
    "Verdict",
    "aggregate",
    "banner_for",
    "confidence_label",
    "decide",
    "fuse",
    "is_degraded",
    "legacy_banner",
    "logit",
    "noisy_or",
    "parse_aggregator",
    "sigmoid",
    "softmax_pool",
    "topk_mean",
    "verdict_for_interval",
    "verdict_for_score",
]
