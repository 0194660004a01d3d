#!/usr/bin/env bash
# End-to-end on kind: create a cluster, build and load the images, install the
# chart (kind values) and run the cluster tests (helm test, a 27-frame batch,
# a canary weight change). Needs docker, kind and kubectl on PATH and the
# project's dev environment (make install: requirements/dev.lock); no helm binary needed:
# the tests install through the Helm v4 SDK (helm-python-sdk).
#
#   k8s-tests/kind-e2e.sh                 # create, test, delete the cluster
#   KEEP_CLUSTER=1 k8s-tests/kind-e2e.sh  # leave it running afterwards
#
# Environment: CLUSTER (default wma-e2e), PYTHON (default .venv/bin/python if
# present, else python3), GATEWAY_API_VERSION (default v1.2.1; empty skips the
# Gateway API CRDs and with them the canary-weight test), KIND_NODE_IMAGE.
set -euo pipefail

cd "$(dirname "$0")/.."
CLUSTER="${CLUSTER:-wma-e2e}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION-v1.2.1}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is not on PATH" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "kind-e2e: cannot reach the Docker daemon (docker info)" >&2; exit 2; }
kind version
kubectl version --client

cleanup() {
  if [[ "${KEEP_CLUSTER:-0}" != "1" ]]; then
    kind delete cluster --name "$CLUSTER" || true
  else
    echo "kind-e2e: keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
  fi
}

# An existing cluster is reused as it is (and kept): it needs the port mapping of
# k8s-tests/kind-config.yaml for the 27-frame test to reach the gateway.
if ! kind get clusters | grep -qx "$CLUSTER"; then
  trap cleanup EXIT
  kind create cluster --name "$CLUSTER" --config k8s-tests/kind-config.yaml \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 120s
fi
kubectl config use-context "kind-$CLUSTER"

echo "kind-e2e: building images"
# Wheelhouses from the locks, then offline builds (pip's index settings must offer
# the CPU torch wheel of requirements/model-server.lock).
bash scripts/build-images.sh dev
kind load docker-image --name "$CLUSTER" wma-model-server:dev wma-gateway:dev

if [[ -n "$GATEWAY_API_VERSION" ]]; then
  kubectl apply -f "https://github.com/kubernetes-sigs/gateway-api/releases/download/${GATEWAY_API_VERSION}/standard-install.yaml"
  kubectl wait --for condition=established --timeout=60s crd/httproutes.gateway.networking.k8s.io
fi

echo "kind-e2e: offline chart checks"
"$PYTHON" -m pytest k8s-tests -m "not cluster and not slow" -q

echo "kind-e2e: helm install + cluster tests"
WMA_E2E_REQUIRE_CLUSTER=1 \
WMA_E2E_GATEWAY_URL="${WMA_E2E_GATEWAY_URL:-http://127.0.0.1:30080}" \
  "$PYTHON" -m pytest k8s-tests -m cluster -v -rs -p no:cacheprovider
