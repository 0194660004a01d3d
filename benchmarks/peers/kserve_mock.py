"""The mock model as a KServe Python SDK model, the way KServe's custom-model docs
write one: a ``kserve.Model`` subclass with ``load`` and ``predict`` taking the v1
``{"instances": [...]}`` payload (here base64 frames), served by ``ModelServer``.

    build/peers-venv/bin/python benchmarks/peers/kserve_mock.py PORT
"""
# mypy: ignore-errors
# (this file runs in the peers' venv, not the project's)

from __future__ import annotations

import sys
from typing import Any

import kserve
from mock_logic import score_b64


class MockModel(kserve.Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        self.ready = True
        return True

    def predict(self, payload: dict[str, Any], headers: Any = None, **kwargs: Any) -> Any:
        return {"predictions": score_b64(payload["instances"])}


if __name__ == "__main__":
    port = int(sys.argv[1])
    kserve.ModelServer(http_port=port, grpc_port=port + 1, enable_grpc=False).start(
        [MockModel("mock")]
    )
