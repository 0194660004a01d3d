#!/usr/bin/env bash
# Build both images from the locks, offline inside the build:
#   bash scripts/build-images.sh [TAG]     # wma-model-server:TAG, wma-gateway:TAG (default dev)
# PYTHON_IMAGE picks the base (default: the Dockerfiles' python:3.11-slim-bookworm;
# wma-base:bookworm from scripts/base-image.sh where no registry is reachable).
# Needs a docker client that reads <Dockerfile>.dockerignore (BuildKit, the default
# builder of current Docker).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-dev}
DOCKER=${DOCKER:-docker}
args=()
if [ -n "${PYTHON_IMAGE:-}" ]; then args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"); fi
bash scripts/wheelhouse.sh model-server
bash scripts/wheelhouse.sh gateway
"$DOCKER" build --network none "${args[@]}" -f docker/model-server.Dockerfile -t "wma-model-server:$TAG" .
"$DOCKER" build --network none "${args[@]}" -f docker/gateway.Dockerfile -t "wma-gateway:$TAG" .
