#!/usr/bin/env bash
# The data service (`citylake serve`): sharing catalogue, data API, ID verification, Delta Sharing
# and open data, on 127.0.0.1:<services.service_port> (8090).
#   scripts/service.sh start     starts it in its own process group, waits for /health
#   scripts/service.sh stop      stops exactly the process group in the pid file
#   scripts/service.sh status
# Client credentials are made once into <data root>/secrets/service_clients/<department>.json.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO_ROOT"
DATA_ROOT=${CITYLAKE_DATA_ROOT:-$REPO_ROOT/var}
export CITYLAKE_DATA_ROOT=$DATA_ROOT
PY=.venv/bin/python
PORT=$("$PY" -c "from citylake.config import load_environment as l; print(l().services.service_port)")
HOST=127.0.0.1
PID_FILE=$DATA_ROOT/run/service.pid
LOG_FILE=$DATA_ROOT/log/service.log
mkdir -p "$DATA_ROOT/run" "$DATA_ROOT/log"

running_pid() {
  [[ -f $PID_FILE ]] || return 1
  local pid
  pid=$(<"$PID_FILE")
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
      && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "citylake serve"; then
    echo "$pid"; return 0
  fi
  rm -f "$PID_FILE"; return 1
}

case ${1:-} in
  start)
    if pid=$(running_pid); then echo "service: already running (pid $pid) on http://$HOST:$PORT"; exit 0; fi
    setsid .venv/bin/citylake serve --host "$HOST" --port "$PORT" >>"$LOG_FILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"
    deadline=$((SECONDS + 60))
    until "$PY" -c "import httpx, sys; sys.exit(httpx.get('http://$HOST:$PORT/health', timeout=2).status_code != 200)" 2>/dev/null; do
      if ! kill -0 "$pid" 2>/dev/null; then rm -f "$PID_FILE"; tail -n 30 "$LOG_FILE" >&2; echo "service: exited during start; see $LOG_FILE" >&2; exit 1; fi
      if ((SECONDS > deadline)); then tail -n 30 "$LOG_FILE" >&2; echo "service: no answer on http://$HOST:$PORT/health; see $LOG_FILE" >&2; exit 1; fi
      sleep 0.5
    done
    echo "service: ready on http://$HOST:$PORT (pid $pid), log $LOG_FILE" ;;
  stop)
    if ! pid=$(running_pid); then echo "service: not running"; exit 0; fi
    kill -TERM -- "-$pid" 2>/dev/null || true
    deadline=$((SECONDS + 20))
    while kill -0 -- "-$pid" 2>/dev/null; do
      if ((SECONDS > deadline)); then kill -KILL -- "-$pid" 2>/dev/null || true; break; fi
      sleep 0.3
    done
    rm -f "$PID_FILE"
    echo "service: stopped (pid $pid)" ;;
  status)
    if pid=$(running_pid); then echo "service: running (pid $pid) on http://$HOST:$PORT"; else echo "service: not running"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
