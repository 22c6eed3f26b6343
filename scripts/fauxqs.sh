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
export FAUXQS_VERSION dir port

installed() {
  grep -qs "\"version\": \"$FAUXQS_VERSION\"" "$dir/node_modules/fauxqs/package.json"
}
install() {
  echo "installing fauxqs@$FAUXQS_VERSION into $dir"
  npm install --silent --prefix "$dir" "fauxqs@$FAUXQS_VERSION"
}
launch() {
  FAUXQS_PORT="$port" FAUXQS_LOGGER=false exec node "$dir/node_modules/fauxqs/dist/cli.js"
}

source "$root/scripts/service.sh"
service_main "${1:-start}" fauxqs "$dir" "$endpoint/health" "$endpoint"
