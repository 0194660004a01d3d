#!/usr/bin/env bash
# A Docker engine for `make e2e`: use the one that answers, or start Debian's dockerd
# with a data root, exec root, socket and pidfile of its own.
#
#   eval "$(bash scripts/docker-engine.sh start)"   # exports DOCKER_HOST (and WMA_E2E_OWN_ENGINE=1
#                                                  # when it started the engine itself)
#   bash scripts/docker-engine.sh stop              # stops only an engine it started
#
# An engine that answers on DOCKER_HOST or the default socket is used as it is and
# never stopped. Otherwise dockerd (apt-get install docker.io, as root) starts with
# its state under WMA_ENGINE_ROOT (default /var/lib/wma-engine), so the images it
# builds are there for the next run.
set -euo pipefail

STATE=${WMA_ENGINE_ROOT:-/var/lib/wma-engine}
RUN=${WMA_ENGINE_RUN:-/run/wma-engine}
SOCK=$RUN/docker.sock
PIDFILE=$RUN/dockerd.pid

answers() {  # answers [HOST]: does an engine answer there?
  local host=${1:-}
  if [ -n "$host" ]; then
    DOCKER_HOST=$host python3 - <<'EOF' >/dev/null 2>&1
import os, socket, urllib.parse
u = urllib.parse.urlparse(os.environ["DOCKER_HOST"])
if u.scheme != "unix":
    raise SystemExit(0 if socket.create_connection((u.hostname, u.port or 2375), 2) else 1)
s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(u.path)
s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n"); raise SystemExit(0 if b" 200 " in s.recv(64) else 1)
EOF
  else
    answers unix:///var/run/docker.sock
  fi
}

case ${1:-} in
  start)
    if [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then
      echo "export DOCKER_HOST=$DOCKER_HOST"; exit 0
    fi
    if answers; then
      echo "export DOCKER_HOST=unix:///var/run/docker.sock"; exit 0
    fi
    if answers "unix://$SOCK"; then
      echo "export DOCKER_HOST=unix://$SOCK WMA_E2E_OWN_ENGINE=1"; exit 0
    fi
    command -v dockerd >/dev/null || { echo "no Docker engine answers and dockerd is not installed (apt-get install docker.io)" >&2; exit 2; }
    mkdir -p "$STATE" "$RUN"
    nohup dockerd --data-root "$STATE/data" --exec-root "$RUN/exec" --pidfile "$PIDFILE" \
      --host "unix://$SOCK" --bridge none --iptables=true \
      >"$STATE/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
      if answers "unix://$SOCK"; then
        echo "export DOCKER_HOST=unix://$SOCK WMA_E2E_OWN_ENGINE=1"; exit 0
      fi
      sleep 0.5
    done
    echo "dockerd did not answer within 30 s; its log:" >&2
    tail -n 30 "$STATE/dockerd.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$PIDFILE" ]; then
      pid=$(cat "$PIDFILE")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
      echo "stopped the engine this script started (pid $pid)"
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
