#!/usr/bin/env bash
# Starts (or stops) moto server, the SQS/ECS emulator the protocol tests talk to, on
# loopback. Installs it into .moto/venv on first use (PyPI). Prints the endpoint.
#
#   scripts/moto.sh start   # idempotent; waits until GET /moto-api/ answers
#   scripts/moto.sh stop
set -euo pipefail

MOTO_VERSION=5.2.5
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.moto"
port="${SPOTQ_MOTO_PORT:-5055}"
endpoint="http://127.0.0.1:$port"

ready() { curl -sf -o /dev/null "$endpoint/moto-api/"; }

case "${1:-start}" in
start)
  if ready; then
    echo "$endpoint"
    exit 0
  fi
  mkdir -p "$dir"
  if ! "$dir/venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    echo "installing moto[server]==$MOTO_VERSION into $dir/venv" >&2
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
  fi
  nohup "$dir/venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  for _ in $(seq 1 100); do
    if ready; then
      echo "$endpoint"
      exit 0
    fi
    sleep 0.2
  done
  echo "moto server did not answer on $endpoint within 20 s; see $dir/moto.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/moto.pid" ]; then
    kill "$(cat "$dir/moto.pid")" 2>/dev/null || true
    rm -f "$dir/moto.pid"
  fi
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
