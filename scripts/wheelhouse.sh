#!/usr/bin/env bash
# Build the wheelhouse an image installs from: every wheel of one lock (and of
# requirements/build.lock), downloaded on the host with their hashes checked, so
# that `docker build` needs no network inside the container.
#
#   bash scripts/wheelhouse.sh model-server     # -> build/wheelhouse/model-server/
#   bash scripts/wheelhouse.sh gateway          # -> build/wheelhouse/gateway/
#
# pip uses this machine's index and find-links settings (a proxy, a mirror, or the
# directory of CPU torch wheels all work as they do for `make install`).
set -euo pipefail
cd "$(dirname "$0")/.."

name=${1:?usage: $0 LOCK_NAME (model-server | gateway | another requirements/NAME.lock)}
lock=requirements/$name.lock
out=build/wheelhouse/$name
[ -f "$lock" ] || { echo "no $lock" >&2; exit 2; }
PIP=${PIP:-python3 -m pip}

mkdir -p "$out"
for req in "$lock" requirements/build.lock; do
  $PIP download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
    --require-hashes --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform linux_x86_64 \
    --abi cp311 --abi abi3 --abi none -r "$req" -d "$out"
done
# Only what the locks name: a wheel left from an older lock would be dead weight.
python3 - "$out" "$lock" requirements/build.lock <<'PY'
import re, sys
from pathlib import Path
out, *locks = sys.argv[1:]
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
wanted = {(norm(m[1]), m[2]) for lock in locks
          for m in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+)", Path(lock).read_text(), re.M)}
for wheel in Path(out).glob("*.whl"):
    name, version = wheel.name.split("-")[:2]
    if (norm(name), version) not in wanted:
        wheel.unlink()
PY
echo "$out: $(find "$out" -name '*.whl' | wc -l) wheels, $(du -sh "$out" | cut -f1)"
