#!/usr/bin/env bash
# A throw-away Azure Blob emulator (Azurite) on loopback, for the Azure store tests.
#
#   scripts/azure-server.sh start DIR [PORT]   # prints the endpoint to export
#   scripts/azure-server.sh stop DIR
#
# Azurite is installed with npm on first use into build/azurite-3.35.0 (override with
# AZURITE_HOME). 3.35.0 is the last release that runs on node 20. Data lives in memory:
# every start is empty. DIR holds the pid file and the log; stop kills only that pid.
set -euo pipefail

AZURITE_VERSION=3.35.0
REPO=$(cd "$(dirname "$0")/.." && pwd)
AZURITE_HOME=${AZURITE_HOME:-$REPO/build/azurite-$AZURITE_VERSION}

usage() { echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2; }

port_answers() { curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/"; }

start() {
  local dir port pid
  dir=$(realpath -m "$1"); port=${2:-10000}
  mkdir -p "$dir"
  if [[ -f $dir/azurite.pid ]] && kill -0 "$(cat "$dir/azurite.pid")" 2>/dev/null; then
    echo "azurite already running from $dir (pid $(cat "$dir/azurite.pid"))" >&2; exit 1
  fi
  if port_answers "$port"; then
    echo "port $port on 127.0.0.1 is already in use; pick another: $0 start DIR PORT" >&2; exit 1
  fi
  if [[ ! -x $AZURITE_HOME/node_modules/.bin/azurite-blob ]]; then
    echo "installing azurite@$AZURITE_VERSION into $AZURITE_HOME ..." >&2
    mkdir -p "$AZURITE_HOME"
    npm install --prefix "$AZURITE_HOME" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >&2
  fi
  nohup node "$AZURITE_HOME/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
    --inMemoryPersistence --disableTelemetry --silent >"$dir/azurite.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/azurite.pid"
  for _ in $(seq 1 100); do  # about 10 s; it is usually ready in 1 s
    if port_answers "$port"; then
      echo "http://127.0.0.1:$port/devstoreaccount1"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "azurite exited during start-up; log $dir/azurite.log:" >&2; cat "$dir/azurite.log" >&2
      rm -f "$dir/azurite.pid"; exit 1
    fi
    sleep 0.1
  done
  echo "azurite did not answer on port $port within 10 s; log: $dir/azurite.log" >&2
  kill "$pid" 2>/dev/null || true
  rm -f "$dir/azurite.pid"; exit 1
}

stop() {
  local dir pid
  dir=$(realpath -m "$1")
  [[ -f $dir/azurite.pid ]] || { echo "no azurite pid file in $dir" >&2; return 0; }
  pid=$(cat "$dir/azurite.pid")
  # Only kill the pid if it is still our azurite (pids get reused).
  if grep -q azurite "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/azurite.pid"
}

case "${1:-}" in
  start) [[ $# -ge 2 ]] || usage; start "$2" "${3:-}" ;;
  stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
  *) usage ;;
esac
