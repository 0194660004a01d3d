"""The chart's schema and the gateway agree on aggregator names and model ids.

Each name is checked against both: Helm's validator with the chart's
values.schema.json, and the gateway's own rule (``wma_core.parse_aggregator``,
which the gateway and the bundle loader use; ``ModelEntry`` for ids). A table
pins the known edge cases; hypothesis adds near misses. If either side drifts,
a name is accepted by one and refused by the other, and this fails. The model
server's settings take the gateway's id rule (``wma_wire.ids``), checked here too.
"""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

AGGREGATORS = [
    "mean", "max", "median", "topk1", "topk4", "topk10", "topk0", "topk01", "topk", "topk-1",
    "softmax_b5", "softmax_b0", "softmax_b00", "softmax_b0.0", "softmax_b0.5", "softmax_b05",
    "softmax_b2.50", "softmax_b.5", "softmax_b5.", "softmax_b", "softmax_b-1", "softmax_b1e3",
    "Mean", "topk4 ", " topk4", "topk4\n", "noisy_or", "",
]  # fmt: skip
MODEL_IDS = [
    "9rfa62j1", "1mjgo9w1", "dfsesrgu", "4vtny88m", "a", "a-b", "-a", "a-", "A", "a.b", "a_b",
    "a" * 22, "a" * 23, "a\n", "", "9", "new-model-2",
]  # fmt: skip

# Settings of hypothesis: the session-scoped chart fixture is safe to share.
CHECKS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _schema_accepts(chart: Any, model: dict[str, str]) -> bool:
    try:
        chart.validate_schema({"models": [model]})
    except helm.HelmValuesError:
        return False
    return True


def _gateway_accepts_aggregator(name: str) -> bool:
    from wma_core.aggregate import AggregatorError, parse_aggregator

    try:
        parse_aggregator(name)
    except AggregatorError:
        return False
    return True


def _gateway_accepts_model_id(model_id: str) -> bool:
    from pydantic import ValidationError
    from wma_fusion.config import ModelEntry

    try:
        ModelEntry.model_validate({"id": model_id, "endpoint": "http://model:8000"})
    except ValidationError:
        return False
    return True


def _is_dns_label_part(model_id: str) -> bool:
    """The chart's extra rule: the id is part of the model Service's DNS name
    ``<fullname>-model-<id>`` (lowercase, digits, '-', alphanumeric at the ends; at
    most 22 characters so a 40-character fullname still fits 63)."""
    return (
        len(model_id) <= 22 and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", model_id) is not None
    )


@pytest.mark.parametrize("name", AGGREGATORS)
def test_schema_and_gateway_agree_on_each_known_aggregator_name(chart: Any, name: str) -> None:
    accepted = _gateway_accepts_aggregator(name)
    assert _schema_accepts(chart, {"id": "9rfa62j1", "aggregator": name}) == accepted, name


@CHECKS
@given(
    name=st.one_of(
        st.from_regex(r"(topk|softmax_b)[0-9.]{0,5}", fullmatch=True),
        st.from_regex(r"(mean|max|median|topk4|softmax_b5)", fullmatch=False),
        st.text(alphabet="topkmaxenisfd_b0123456789.-", max_size=14),
    )
)
@example(name="softmax_b0")
def test_schema_and_gateway_agree_on_any_aggregator_name(chart: Any, name: str) -> None:
    accepted = _gateway_accepts_aggregator(name)
    assert _schema_accepts(chart, {"id": "9rfa62j1", "aggregator": name}) == accepted, name


def test_the_gateway_refuses_softmax_b0_and_so_does_the_schema(chart: Any) -> None:
    assert not _gateway_accepts_aggregator("softmax_b0")
    assert not _schema_accepts(chart, {"id": "9rfa62j1", "aggregator": "softmax_b0"})
    assert _schema_accepts(chart, {"id": "9rfa62j1", "aggregator": "softmax_b5"})


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_schema_accepts_a_model_id_iff_the_gateway_does_and_it_fits_a_dns_name(
    chart: Any, model_id: str
) -> None:
    expected = _gateway_accepts_model_id(model_id) and _is_dns_label_part(model_id)
    assert _schema_accepts(chart, {"id": model_id}) == expected, repr(model_id)


@CHECKS
@given(
    model_id=st.one_of(
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True),
        st.text(alphabet="az09AZ-._\n ", max_size=30),
    )
)
def test_schema_accepts_any_model_id_iff_the_gateway_does_and_it_fits_a_dns_name(
    chart: Any, model_id: str
) -> None:
    expected = _gateway_accepts_model_id(model_id) and _is_dns_label_part(model_id)
    assert _schema_accepts(chart, {"id": model_id}) == expected, repr(model_id)


def _model_server_accepts_model_id(model_id: str) -> bool:
    from pydantic import ValidationError
    from wma_model_server.settings import ModelServerSettings

    try:
        ModelServerSettings.model_validate({"model_id": model_id})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("model_id", [*MODEL_IDS, "a" * 63, "a" * 64, "A.b_c-9"])
def test_the_model_server_accepts_a_model_id_iff_the_gateway_does(model_id: str) -> None:
    assert _model_server_accepts_model_id(model_id) == _gateway_accepts_model_id(model_id)
