#!/usr/bin/env bash
# Re-resolve the locked Python dependencies (requirements/*.lock) from pyproject.toml.
#
#   make lock            # or: bash scripts/lock.sh
#
# Three locks, one resolution: dev.lock is resolved first (the project with every
# extra: what `make install`, CI and the tests use); the image
# locks are resolved under dev.lock as constraints, so every lock pins the same
# version of every package they share.
#   requirements/dev.lock           make install, .ci/run
#   requirements/model-server.lock  docker/model-server.Dockerfile (base + model-server, torch)
#   requirements/gateway.lock       docker/gateway.Dockerfile (base only: serving needs no tools)
#   requirements/build.lock         setuptools and wheel, to build the project in the images
# Every line carries its sha256 hashes; installs use --require-hashes.
#
# torch is pinned to the CPU build (TORCH_PIN). Resolving needs a place that
# offers that wheel: set TORCH_FIND_LINKS to a directory or URL of CPU wheels
# (default: pip's own find-links setting, if any).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=${UV_VERSION:-0.13.9}
TORCH_PIN=${TORCH_PIN:-torch==2.13.0+cpu}
TORCH_FIND_LINKS=${TORCH_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}
TOOLS=build/lock-tools

if [ ! -x "$TOOLS/bin/uv" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet "uv==$UV_VERSION"
fi
uv=("$TOOLS/bin/uv" pip compile --quiet --generate-hashes --python-version 3.11
    --no-header --no-annotate)
if [ -n "$TORCH_FIND_LINKS" ]; then
  uv+=(--find-links "$TORCH_FIND_LINKS")
fi

constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "$TORCH_PIN" > "$constraints"

header() {
  printf '# %s\n' "Locked by scripts/lock.sh (make lock) from pyproject.toml: $1." \
    "Install with: pip install --require-hashes -r $2" \
    "Linux x86_64, CPython 3.11; torch is the CPU build ($TORCH_PIN)."
}

lock() {  # lock NAME DESCRIPTION SOURCE [extra...]
  local what=$2 source=$3 out=requirements/$1.lock
  shift 3
  local extras=()
  for extra in "$@"; do extras+=(--extra "$extra"); done
  { header "$what" "$out"; "${uv[@]}" "$source" "${extras[@]}" -c "$constraints"; } > "$out.tmp"
  mv "$out.tmp" "$out"
  echo "wrote $out ($(grep -c '==' "$out") packages)"
}

mkdir -p requirements
lock dev "the project with every extra" pyproject.toml dev calibrate model-server local torch
# The image locks follow dev.lock's versions.
grep -E '^[A-Za-z0-9._-]+==' requirements/dev.lock | sed 's/ .*//' >> "$constraints"
lock model-server "the model-server image (base, model-server and torch extras)" \
  pyproject.toml model-server torch
lock gateway "the gateway image (base dependencies)" pyproject.toml
build_reqs=$(mktemp)
printf 'setuptools>=68\nwheel\n' > "$build_reqs"
lock build "the build backend the images build the project with" "$build_reqs"
rm -f "$build_reqs"
# The peer frameworks of the serving benchmark, resolved on their own: they live in
# their own venv (build/peers-venv) and KServe's pins conflict with dev.lock's.
{ header "benchmarks/peers/requirements.in, the peer serving frameworks of the serving benchmark, in their own venv" requirements/peers.lock
  "${uv[@]}" benchmarks/peers/requirements.in; } > requirements/peers.lock.tmp
mv requirements/peers.lock.tmp requirements/peers.lock
echo "wrote requirements/peers.lock ($(grep -c '==' requirements/peers.lock) packages)"
