#!/usr/bin/env bash
# Starts (or stops) fauxqs, a fast SQS emulator for throughput and latency runs, on
# loopback. Installs it into .fauxqs/ on first use (npm; Node 20). Prints the endpoint.
#
#   scripts/fauxqs.sh start   # idempotent; waits until GET /health answers
#   scripts/fauxqs.sh stop
set -euo pipefail

FAUXQS_VERSION=1.9.2
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.fauxqs"
port="${SPOTQ_FAUXQS_PORT:-4566}"
endpoint="http://127.0.0.1:$port"

ready() { curl -sf -o /dev/null "$endpoint/health"; }

case "${1:-start}" in
start)
  if ready; then
    echo "$endpoint"
    exit 0
  fi
  mkdir -p "$dir"
  if [ ! -f "$dir/node_modules/fauxqs/package.json" ] ||
    ! grep -q "\"version\": \"$FAUXQS_VERSION\"" "$dir/node_modules/fauxqs/package.json"; then
    echo "installing fauxqs@$FAUXQS_VERSION into $dir" >&2
    npm install --silent --prefix "$dir" "fauxqs@$FAUXQS_VERSION" >&2
  fi
  FAUXQS_PORT="$port" FAUXQS_LOGGER=false nohup node "$dir/node_modules/fauxqs/dist/cli.js" \
    >"$dir/fauxqs.log" 2>&1 &
  echo $! >"$dir/fauxqs.pid"
  for _ in $(seq 1 100); do
    if ready; then
      echo "$endpoint"
      exit 0
    fi
    sleep 0.2
  done
  echo "fauxqs did not answer on $endpoint within 20 s; see $dir/fauxqs.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/fauxqs.pid" ]; then
    kill "$(cat "$dir/fauxqs.pid")" 2>/dev/null || true
    rm -f "$dir/fauxqs.pid"
  fi
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
