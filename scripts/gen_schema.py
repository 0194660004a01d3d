"""Write the generated parts of the chart's values schema from the gateway's own rules.

``definitions.gatewayConfig`` comes from the gateway's pydantic config models
(:func:`wma_fusion.config_schema.gateway_config_schema`) and the aggregator pattern
of ``definitions.modelSettings`` from :data:`wma_core.aggregate.AGGREGATOR_PATTERN`;
the rest of ``charts/wma-ensemble/values.schema.json`` is written by hand.

    python scripts/gen_schema.py          # rewrite the file
    python scripts/gen_schema.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wma_core.aggregate import AGGREGATOR_PATTERN
from wma_fusion.config_schema import gateway_config_schema

SCHEMA = Path(__file__).resolve().parent.parent / "charts" / "wma-ensemble" / "values.schema.json"


def generated(text: str) -> str:
    """The schema file's text with its generated parts brought up to date."""
    schema = json.loads(text)
    definitions = schema["definitions"]
    definitions["gatewayConfig"] = gateway_config_schema()
    definitions["modelSettings"]["properties"]["aggregator"]["pattern"] = AGGREGATOR_PATTERN
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    args = parser.parse_args(argv)
    text = SCHEMA.read_text()
    new = generated(text)
    if args.check:
        if new != text:
            sys.stderr.write(f"{SCHEMA} is out of date: run python scripts/gen_schema.py\n")
            return 1
        return 0
    if new != text:
        SCHEMA.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
