#!/usr/bin/env bash
# Runs real Credo wallets (../shared/interop/credo, both the 0.5 and 0.6
# lines) against `mediator serve` on a fresh PostgreSQL database, and fails
# unless every scenario delivered every message exactly once.
#
# Usage: scripts/interop-credo.sh [--scenarios basic,offline] [--strategies PickUpV2] [--messages 200] [--lines "0.5 0.6"]
# Needs: Node.js >= 20 with npm (the client installs its packages once), Go,
# PostgreSQL at $MEDIATOR_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
credo=${CREDO_INTEROP_DIR:-$root/../shared/interop/credo}
scenarios=basic,offline
strategies=PickUpV2
messages=200
lines="0.5 0.6"
while [ $# -gt 0 ]; do
  case "$1" in
    --scenarios) scenarios=$2; shift 2 ;;
    --strategies) strategies=$2; shift 2 ;;
    --messages) messages=$2; shift 2 ;;
    --lines) lines=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
[ -x "$credo/run.sh" ] || { echo "interop-credo: $credo/run.sh not found (set CREDO_INTEROP_DIR)" >&2; exit 2; }

admin_url=${MEDIATOR_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=$(mktemp -d)
db="mediator_interop_$$_$RANDOM"
db_url="${admin_url%/*}/$db"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && go build -o "$work/mediator" ./cmd/mediator)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export MEDIATOR_DATABASE_URL=$db_url
export MEDIATOR_MASTER_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export MEDIATOR_LISTEN=127.0.0.1:$port
"$work/mediator" serve --log-format json >"$work/mediator.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/mediator.log" >&2; exit 1; }
  sleep 0.1
done
invitation=$(curl -fsS "http://127.0.0.1:$port/invitation")
echo "interop-credo: mediator pid $pid on port $port, database $db" >&2

failed=0
for line in $lines; do
  for strategy in ${strategies//,/ }; do
    echo "interop-credo: Credo $line, $strategy, scenarios $scenarios, $messages messages" >&2
    if ! "$credo/run.sh" "$line" --invitation "$invitation" --scenario "$scenarios" \
        --strategy "$strategy" --messages "$messages" --mediator-pid "$pid" | tee -a "$work/results.jsonl"; then
      failed=1
      echo "interop-credo: FAILED: Credo $line $strategy" >&2
    fi
  done
done
if [ "$failed" != 0 ]; then
  echo "--- mediator log (last 60 lines) ---" >&2
  tail -n 60 "$work/mediator.log" >&2
  exit 1
fi
echo "interop-credo: every scenario delivered every message exactly once" >&2
