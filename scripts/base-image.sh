#!/usr/bin/env bash
# Make a Python base image from Debian packages alone, for machines that reach no
# container registry: a minimal bookworm root with python3 and venv (debootstrap),
# imported into the Docker engine with `docker import`.
#
#   sudo bash scripts/base-image.sh [TAG]      # default TAG: wma-base:bookworm
#   docker build --build-arg PYTHON_IMAGE=wma-base:bookworm ...
#
# The Debian mirror is the one apt on this machine is configured with, or MIRROR.
# Needs root (debootstrap), debootstrap and a Docker engine (DOCKER_HOST or the
# default socket). Takes a few minutes; skipped when TAG already exists (FORCE=1
# rebuilds).
set -euo pipefail

TAG=${1:-wma-base:bookworm}
SUITE=${SUITE:-bookworm}
DOCKER=${DOCKER:-docker}

if [ -z "${FORCE:-}" ] && "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG exists"
  exit 0
fi

apt_mirror() {
  # deb822 sources first, then the one-line format.
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
        | grep -vE 'security' | grep -m1 -E '/debian/?$' || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
          | awk '{print $2}' | grep -vE 'security' | grep -m1 -E '/debian/?$' || true)
  fi
  echo "$uri"
}
MIRROR=${MIRROR:-$(apt_mirror)}
if [ -z "$MIRROR" ]; then
  echo "no Debian mirror found in /etc/apt; set MIRROR" >&2
  exit 2
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "debootstrap $SUITE from $MIRROR into $root"
# python3-venv brings ensurepip (pip inside venvs); ca-certificates for TLS clients.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# What an image needs no more: package caches and lists, docs, man pages.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
# `python` as on the official images (the Dockerfiles' RUN lines use it).
ln -sf python3 "$root/usr/bin/python"
tar -C "$root" --numeric-owner -c . | "$DOCKER" import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' - "$TAG" >/dev/null
echo "base image $TAG: $("$DOCKER" image inspect -f '{{.Size}}' "$TAG") bytes"
