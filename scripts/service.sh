# Shared by the emulator scripts (sourced, not run): start a local server in the
# background once, wait until it answers, or stop it.
#
#   service_main ACTION NAME DIR READY_URL ENDPOINT
#
# The caller defines `installed` (true when the server is installed in DIR), `install`
# and `launch` (starts the server in the foreground; its output goes to DIR/NAME.log).

service_main() {
  local action=$1 name=$2 dir=$3 ready_url=$4 endpoint=$5
  case "$action" in
  start)
    if curl -sf -o /dev/null "$ready_url"; then
      echo "$endpoint"
      return 0
    fi
    mkdir -p "$dir"
    if ! installed; then
      install >&2
    fi
    nohup bash -c "$(declare -f launch); launch" >"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
    for _ in $(seq 1 100); do
      if curl -sf -o /dev/null "$ready_url"; then
        echo "$endpoint"
        return 0
      fi
      sleep 0.2
    done
    echo "$name did not answer on $endpoint within 20 s; see $dir/$name.log" >&2
    return 1
    ;;
  stop)
    if [ -f "$dir/$name.pid" ]; then
      kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
      rm -f "$dir/$name.pid"
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    return 2
    ;;
  esac
}
