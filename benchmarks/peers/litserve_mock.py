"""The mock model as a LitServe API, the way LitServe's docs write one: a
``ls.LitAPI`` with ``setup``, ``decode_request``, ``predict`` and ``encode_response``,
served by ``ls.LitServer`` with its defaults (``POST /predict``, JSON).

    build/peers-venv/bin/python benchmarks/peers/litserve_mock.py PORT
"""

# mypy: ignore-errors
# (LitServe reads the annotations of decode_request to build its endpoint: left off, as
# in its docs; this file runs in the peers' venv, not the project's.)

import sys

import litserve as ls
from mock_logic import score_b64


class MockAPI(ls.LitAPI):
    def setup(self, device):
        self.model = score_b64

    def decode_request(self, request):
        return request["images"]

    def predict(self, images):
        return self.model(images)

    def encode_response(self, output):
        return {"probs": output}


if __name__ == "__main__":
    ls.LitServer(MockAPI(), accelerator="cpu").run(
        host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False
    )
