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
export MOTO_VERSION dir port

installed() {
  "$dir/venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null
}
install() {
  echo "installing moto[server]==$MOTO_VERSION into $dir/venv"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}
launch() {
  exec "$dir/venv/bin/moto_server" -H 127.0.0.1 -p "$port"
}

source "$root/scripts/service.sh"
service_main "${1:-start}" moto "$dir" "$endpoint/moto-api/" "$endpoint"
