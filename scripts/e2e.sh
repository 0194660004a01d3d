#!/usr/bin/env bash
# make e2e: the chart's release in real containers (k8s-tests/test_k8s_containers.py).
#
# 1. a Docker engine: the one that answers, or Debian's dockerd started here and
#    stopped at the end (scripts/docker-engine.sh);
# 2. a base image: $WMA_E2E_BASE_IMAGE if set (e.g. python:3.11-slim-bookworm where a
#    registry is reachable), else wma-base:bookworm made from Debian packages
#    (scripts/base-image.sh, as root);
# 3. the wheelhouses of both images from the locks (scripts/wheelhouse.sh);
# 4. the tests: they build wma-model-server:dev and wma-gateway:dev offline, run the
#    rendered release, and remove every container and network they made;
# 5. dangling images older than a day are pruned (the two images stay).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}

eval "$(bash scripts/docker-engine.sh start)"
export DOCKER_HOST
if [ -n "${WMA_E2E_OWN_ENGINE:-}" ]; then
  trap 'bash scripts/docker-engine.sh stop' EXIT
fi
if [ -z "${WMA_E2E_BASE_IMAGE:-}" ]; then
  export WMA_E2E_BASE_IMAGE=wma-base:bookworm
  bash scripts/base-image.sh "$WMA_E2E_BASE_IMAGE"
fi
bash scripts/wheelhouse.sh model-server
bash scripts/wheelhouse.sh gateway
"$PYTHON" -m pytest --e2e k8s-tests/test_k8s_containers.py -p no:cacheprovider
# Untagged build stages of earlier builds are the next build's cache; a day old, they
# are only disk.
${DOCKER:-docker} image prune --force --filter until=24h >/dev/null
echo "e2e figures (build/e2e/report.json):"
cat build/e2e/report.json
