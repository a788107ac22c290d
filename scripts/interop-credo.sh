#!/usr/bin/env bash
# Runs real Credo wallets (../shared/interop/credo, both the 0.5 and 0.6
# lines) against `mediator serve` on a fresh PostgreSQL database, and fails
# unless every scenario delivered every message exactly once.
#
# Usage: scripts/interop-credo.sh [--scenarios basic,offline] [--strategies PickUpV2] [--messages 200]
#                                 [--lines "0.5 0.6"] [--instances 1] [-- extra client flags]
# With --instances N > 1, N mediators share the database behind a
# round-robin proxy with no stickiness (internal/cmd/rrproxy), as behind a
# load balancer; wallets only ever see the proxy's URL.
# Needs: Node.js >= 20 with npm (the client installs its packages once), Go,
# PostgreSQL at $MEDIATOR_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
credo=${CREDO_INTEROP_DIR:-$root/../shared/interop/credo}
scenarios=basic,offline
strategies=PickUpV2
messages=200
lines="0.5 0.6"
instances=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --instances) instances=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
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
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
  wait 2>/dev/null || true
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && go build -o "$work/mediator" ./cmd/mediator && go build -o "$work/rrproxy" ./internal/cmd/rrproxy)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_healthy() {
  for _ in $(seq 1 100); do
    curl -fsS "http://$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "interop-credo: nothing healthy at $1" >&2; tail -n 40 "$work"/mediator-*.log >&2; exit 1
}
export MEDIATOR_DATABASE_URL=$db_url
export MEDIATOR_MASTER_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
front=127.0.0.1:$(free_port)
pids=()
backends=()
if [ "$instances" -gt 1 ]; then
  export MEDIATOR_ENDPOINT="http://$front,ws://$front"
fi
for i in $(seq 1 "$instances"); do
  if [ "$instances" -gt 1 ]; then addr=127.0.0.1:$(free_port); else addr=$front; fi
  MEDIATOR_LISTEN=$addr MEDIATOR_ADMIN_LISTEN=127.0.0.1:$(free_port) \
    "$work/mediator" serve --log-format json >"$work/mediator-$i.log" 2>&1 &
  pids+=($!)
  backends+=("http://$addr")
  wait_healthy "$addr"
done
if [ "$instances" -gt 1 ]; then
  "$work/rrproxy" -listen "$front" "${backends[@]}" >"$work/rrproxy.log" 2>&1 &
  pids+=($!)
  wait_healthy "$front"
fi
pid=${pids[0]}
invitation=$(curl -fsS "http://$front/invitation")
echo "interop-credo: $instances mediator(s) ${pids[*]} behind $front, database $db" >&2

failed=0
for line in $lines; do
  for strategy in ${strategies//,/ }; do
    echo "interop-credo: Credo $line, $strategy, scenarios $scenarios, $messages messages" >&2
    if ! "$credo/run.sh" "$line" --invitation "$invitation" --scenario "$scenarios" \
        --strategy "$strategy" --messages "$messages" --mediator-pid "$pid" "${extra[@]}" | tee -a "$work/results.jsonl"; then
      failed=1
      echo "interop-credo: FAILED: Credo $line $strategy" >&2
    fi
  done
done
if [ "$failed" != 0 ]; then
  echo "--- mediator log (last 60 lines) ---" >&2
  tail -n 60 "$work"/mediator-*.log >&2
  exit 1
fi
echo "interop-credo: every scenario delivered every message exactly once" >&2
