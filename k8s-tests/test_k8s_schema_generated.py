"""The chart's values schema holds the gateway's own config rules, generated.

``scripts/gen_schema.py`` writes ``definitions.gatewayConfig`` from the gateway's
pydantic models and the aggregator pattern from ``wma_core``; if a model changes
and the file is not regenerated, this fails.
"""

from __future__ import annotations

import subprocess
import sys

from chart_render import REPO
from wma_fusion.config import GatewayConfig
from wma_fusion.config_schema import CHART_OWNED_KEYS, gateway_config_schema


def test_the_values_schema_is_what_gen_schema_writes() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_schema.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_generated_part_covers_every_gateway_config_section_the_chart_does_not_own() -> None:
    generated = set(gateway_config_schema()["properties"])
    assert generated == set(GatewayConfig.model_fields) - set(CHART_OWNED_KEYS)
