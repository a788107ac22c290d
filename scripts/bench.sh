#!/usr/bin/env bash
# scripts/bench.sh — measure the mediator against the raw PostgreSQL limit of
# this machine and write a Markdown report.
#
#   scripts/bench.sh [-o bench-report.md] [-k]
#
#   -o FILE   report path (default bench-report.md)
#   -k        keep the work directory (binaries, logs, raw JSON) for inspection
#
# Knobs (environment): PGBENCH_SECONDS, PAIR_SECONDS, LOAD_WALLETS, LOAD_SENDERS, LOAD_MESSAGES,
# QUEUE_SENDERS, QUEUE_MESSAGES, QUEUE_REPEATS, IDLE_SOCKETS, IDLE_HOLD, BACKLOG_ROWS, PICKUP_REQUESTS, PAYLOAD_BYTES, GO_BENCHTIME;
# MEDIATOR_BIN: a prebuilt mediator binary to measure instead of building ./cmd/mediator.
#
# In one run, everything on loopback and against the PostgreSQL server at
# $MEDIATOR_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres,
# a URL whose user may create databases):
#   1. the machine: CPUs, RAM, kernel, Go, PostgreSQL and its durability settings;
#   2. the raw PostgreSQL limit: pgbench inserting one row with the payload of a
#      real forward (~1.5 KiB bytea, as queued_message keeps it) into a scratch table, -j 2 -T 15 with 8,
#      32 and 64 clients (the best rate picks the reference's client count),
#      with the server's durability settings (the mediator does not change
#      them); also into a copy of queued_message (same indexes as the
#      mediator's table);
#   3. Go benchmarks of the hot paths (envelope, queuepg, mediator, pickup);
#   4. start to ready (/readyz) of `mediator serve`, fresh and existing database;
#   5. one instance: load runs with cmd/mediator-load (queue mode with 8 and with
#      128 senders, the latter QUEUE_REPEATS times, each run between two
#      pgbench runs with the reference's clients, for a median of the run ÷
#      the better of its two brackets; live; poll);
#      10,000 idle live WebSockets and the instance's RSS; delivery-request
#      latency with an empty queue table and with 1,000,000 messages of other
#      wallets queued;
#   6. two instances behind internal/cmd/rrproxy: a live run through the proxy,
#      and one addressing both instances directly to split same-instance and
#      cross-instance delivery latency.
# Every step is bounded in time; the whole run takes about 5–10 minutes. The
# script stops the processes and drops the databases it created.
set -euo pipefail

REPORT=bench-report.md
KEEP=0
while getopts "o:kh" opt; do
  case $opt in
    o) REPORT=$OPTARG ;;
    k) KEEP=1 ;;
    h) sed -n '2,30p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
case $REPORT in /*) ;; *) REPORT=$ROOT/$REPORT ;; esac

# ---- knobs (environment) ----
PGBENCH_SECONDS=${PGBENCH_SECONDS:-15}
PAIR_SECONDS=${PAIR_SECONDS:-10} # each pgbench bracket around a wide queue-mode run
LOAD_WALLETS=${LOAD_WALLETS:-50}
LOAD_SENDERS=${LOAD_SENDERS:-8}
LOAD_MESSAGES=${LOAD_MESSAGES:-5000}
QUEUE_SENDERS=${QUEUE_SENDERS:-128}
QUEUE_MESSAGES=${QUEUE_MESSAGES:-20000}
QUEUE_REPEATS=${QUEUE_REPEATS:-3}
IDLE_SOCKETS=${IDLE_SOCKETS:-10000}
IDLE_HOLD=${IDLE_HOLD:-10s}
BACKLOG_ROWS=${BACKLOG_ROWS:-1000000}
PICKUP_REQUESTS=${PICKUP_REQUESTS:-300}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-700} # plaintext; ~1.5 KiB once packed
GO_BENCHTIME=${GO_BENCHTIME:-1s}

ADMIN_URL=${MEDIATOR_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
case $ADMIN_URL in
  postgres://*|postgresql://*) ;;
  *) echo "bench: MEDIATOR_TEST_DATABASE_URL must be a postgres:// URL" >&2; exit 2 ;;
esac
ADMIN_NOQ=${ADMIN_URL%%\?*}
ADMIN_Q=""
[[ $ADMIN_URL == *\?* ]] && ADMIN_Q="?${ADMIN_URL#*\?}"
SERVER_URL=${ADMIN_NOQ%/*}
db_url() { echo "$SERVER_URL/$1$ADMIN_Q"; }

for tool in go psql pgbench curl jq; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 2; }
done
if ! psql -qtAX "$ADMIN_URL" -c 'select 1' >/dev/null 2>&1; then
  echo "bench: no PostgreSQL at $ADMIN_URL (set MEDIATOR_TEST_DATABASE_URL)" >&2
  exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mediator-bench.XXXXXX")
RUN_ID=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
PIDS=()
DBS=()

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }

stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  for db in "${DBS[@]}"; do
    psql -qtAX "$ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
  done
  if [[ $KEEP == 1 ]]; then
    log "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

new_db() { # name → creates it, registers it for cleanup
  DBS+=("$1")
  psql -qtAX "$ADMIN_URL" -c "CREATE DATABASE \"$1\"" >/dev/null
}

# free_port → a port nothing listens on, below the kernel's ephemeral range
# (the load generator's thousands of sockets take ports there), and not
# handed out before in this run (instances are started after their ports
# are chosen).
PORTS_FILE=$WORK/ports
: >"$PORTS_FILE"
free_port() {
  local p lo
  lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  ((lo > 11000)) || lo=32768 # an ephemeral range starting low: ports below 32768 then
  for _ in $(seq 200); do
    p=$((10000 + RANDOM % (lo - 10000)))
    grep -qx "$p" "$PORTS_FILE" && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p" >>"$PORTS_FILE"
      echo "$p"
      return
    fi
  done
  echo "bench: no free port" >&2
  return 1
}

MASTER_KEY=$(head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n')

# start_mediator NAME PORT DBURL [ENDPOINTS] → sets LAST_PID
start_mediator() {
  local name=$1 port=$2 db=$3 endpoints=${4:-}
  local admin
  admin=$(free_port)
  MEDIATOR_LISTEN=127.0.0.1:$port MEDIATOR_DATABASE_URL=$db MEDIATOR_MASTER_KEY=$MASTER_KEY \
    MEDIATOR_ENDPOINT=$endpoints MEDIATOR_LOG_LEVEL=warn MEDIATOR_ADMIN_LISTEN=127.0.0.1:$admin \
    "$WORK/mediator" serve >"$WORK/$name.log" 2>&1 &
  LAST_PID=$!
  LAST_ADMIN=127.0.0.1:$admin
  PIDS+=("$LAST_PID")
  wait_ready "http://127.0.0.1:$port" "$WORK/$name.log"
}

wait_ready() {
  local base=$1 logf=$2
  for _ in $(seq 600); do
    curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: $base not ready after 30s; log:" >&2
  tail -20 "$logf" >&2
  return 1
}

CLK_TCK=$(getconf CLK_TCK)
cpu_seconds() { # pid → user+system CPU seconds so far
  awk -v t="$CLK_TCK" '{printf "%.2f", ($14+$15)/t}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# vacuum DBURL: the queue tables as autovacuum keeps them between bursts.
# Every delivered message leaves a dead row and index entries behind; on a
# server with autovacuum off (CI configurations) they would pile up from
# one run into the next and slow its claims down.
vacuum() {
  psql -qX "$1" -c 'VACUUM (ANALYZE) queued_message' -c 'VACUUM (ANALYZE) live_session' >/dev/null
}

# load NAME MEDIATOR_PID ARGS... → $WORK/NAME.json (+ mediator CPU seconds)
load() {
  local name=$1 mpid=$2
  shift 2
  if [[ -n ${LOAD_DB:-} ]]; then vacuum "$LOAD_DB"; fi
  local c0 c1 rc=0
  c0=$(cpu_seconds "$mpid")
  timeout 300 "$WORK/mediator-load" --json --log-level warn --payload-bytes "$PAYLOAD_BYTES" "$@" \
    >"$WORK/$name.json" 2>"$WORK/$name.err" || rc=$?
  c1=$(cpu_seconds "$mpid")
  echo "$c0 $c1" | awk '{printf "%.2f", $2-$1}' >"$WORK/$name.cpu"
  if [[ ! -s $WORK/$name.json ]]; then
    echo "bench: load run $name produced no result (exit $rc):" >&2
    tail -5 "$WORK/$name.err" >&2
    echo '{}' >"$WORK/$name.json"
  fi
  log "$name: exit $rc, $(jq -r '"\(.forwardsPerSec) forwards/s, \(.deliveredPerSec) delivered/s, lost \(.lost), duplicates \(.duplicates), errors \(.errors)"' "$WORK/$name.json")"
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# forward_statements ADMIN_ADDR → "statements rows" from the instance's /metrics
forward_statements() {
  { curl -fsS "http://$1/metrics" 2>/dev/null || true; } | awk '
    $1 == "mediator_forward_statements_total" { s = $2 }
    $1 == "mediator_forward_statement_rows_total" { r = $2 }
    END { printf "%d %d", s, r }'
}

# load_batched NAME MEDIATOR_PID ADMIN_ADDR ARGS... → load, plus $WORK/NAME.batch:
# the mean number of forwards per insert statement during the run
load_batched() {
  local name=$1 mpid=$2 admin=$3
  shift 3
  local b0 b1
  b0=$(forward_statements "$admin")
  load "$name" "$mpid" "$@"
  b1=$(forward_statements "$admin")
  echo "$b0 $b1" | awk '{ if ($3 > $1) printf "%.1f (%d statements)", ($4-$2)/($3-$1), $3-$1; else printf "–" }' >"$WORK/$name.batch"
}

# ---- build ----
log "building into $WORK"
LOAD_START=$(loadavg)
START_TS=$(date +%s)
if [[ -n ${MEDIATOR_BIN:-} ]]; then
  cp "$MEDIATOR_BIN" "$WORK/mediator"
  MEDIATOR_SOURCE="prebuilt \`$MEDIATOR_BIN\`"
else
  go build -o "$WORK/mediator" ./cmd/mediator
  MEDIATOR_SOURCE="built from this working tree"
fi
go build -o "$WORK/mediator-load" ./cmd/mediator-load
go build -o "$WORK/rrproxy" ./internal/cmd/rrproxy

# Sockets: 10,000 on each side of the loopback, plus slack.
HARD=$(ulimit -Hn)
if [[ $HARD == unlimited || $HARD -gt 65536 ]]; then HARD=65536; fi
ulimit -n "$HARD" 2>/dev/null || true
NOFILE=$(ulimit -n)

# ---- 1. machine ----
log "recording the machine"
CPU_MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
[[ -z $CPU_MODEL ]] && CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
NPROC=$(nproc)
MEM_TOTAL=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
KERNEL=$(uname -sr)
GO_VERSION=$(go version | awk '{print $3, $4}')
PG_VERSION=$(psql -qtAX "$ADMIN_URL" -c 'show server_version')
PGBENCH_VERSION=$(pgbench --version | sed 's/^pgbench (PostgreSQL) //')
pg_setting() { psql -qtAX "$ADMIN_URL" -c "show $1"; }
PG_AUTOVACUUM=$(pg_setting autovacuum)
PG_SETTINGS="synchronous_commit=$(pg_setting synchronous_commit), fsync=$(pg_setting fsync), autovacuum=$PG_AUTOVACUUM, wal_sync_method=$(pg_setting wal_sync_method), full_page_writes=$(pg_setting full_page_writes), commit_delay=$(pg_setting commit_delay), shared_buffers=$(pg_setting shared_buffers), max_connections=$(pg_setting max_connections)"
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git status --porcelain 2>/dev/null | grep -c . || true)

# ---- 2. raw PostgreSQL limit ----
log "pgbench: one-row inserts for ${PGBENCH_SECONDS}s"
PGDB=mbench_${RUN_ID}_pgbench
new_db "$PGDB"
PGURL=$(db_url "$PGDB")
"$WORK/mediator-load" sample-envelope --payload-bytes "$PAYLOAD_BYTES" >"$WORK/payload.json"
PAYLOAD_LEN=$(tr -d '\n' <"$WORK/payload.json" | wc -c)
# The mediator's own schema, for the second scratch table.
MEDIATOR_DATABASE_URL=$PGURL MEDIATOR_MASTER_KEY=$MASTER_KEY timeout 60 "$WORK/mediator" migrate >"$WORK/migrate.log" 2>&1
psql -qX -v ON_ERROR_STOP=1 "$PGURL" >/dev/null <<'SQL'
CREATE TABLE scratch (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    connection_id uuid        NOT NULL,
    payload       bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE scratch_queue (LIKE queued_message INCLUDING ALL);
SQL
# pgbench would read ":name" in the payload as a variable; a packed message
# holds none (base64url and JSON punctuation only), check anyway.
if grep -Eq ':[A-Za-z_]' "$WORK/payload.json"; then
  echo "bench: payload contains ':name', pgbench would substitute it" >&2
  exit 1
fi
PAYLOAD=$(tr -d '\n' <"$WORK/payload.json")
# As a bytea constant, which the prepared statement parses once (the
# mediator sends each payload as a parameter).
PAYLOAD_HEX=$(printf '%s' "$PAYLOAD" | od -An -v -tx1 | tr -d ' \n')
{
  echo '\set c random(1, 10000)'
  echo "INSERT INTO scratch (connection_id, payload) VALUES (md5(:c::text)::uuid, '\\x$PAYLOAD_HEX'::bytea);"
} >"$WORK/insert.sql"
{
  echo '\set c random(1, 10000)'
  echo "INSERT INTO scratch_queue (connection_id, recipient_dids, recipient_key, encrypted_message, size_bytes) VALUES (md5(:c::text)::uuid, ARRAY['didkey'], 'recipientkey', '\\x$PAYLOAD_HEX'::bytea, $PAYLOAD_LEN);"
} >"$WORK/insert_queue.sql"
pgbench_tps() { sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p' "$1" | awk '{printf "%.0f", $1}'; }
pgbench_lat() { sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$1"; }
timeout $((PGBENCH_SECONDS + 60)) pgbench -n -M prepared -c 8 -j 2 -T "$PGBENCH_SECONDS" -f "$WORK/insert.sql" "$PGURL" >"$WORK/pgbench.txt" 2>&1
timeout $((PGBENCH_SECONDS + 60)) pgbench -n -M prepared -c 32 -j 2 -T "$PGBENCH_SECONDS" -f "$WORK/insert.sql" "$PGURL" >"$WORK/pgbench32.txt" 2>&1
# 64 clients where the server takes them beside its other connections.
PG64_TPS= PG64_LAT=
if (($(pg_setting max_connections) >= 80)); then
  timeout $((PGBENCH_SECONDS + 60)) pgbench -n -M prepared -c 64 -j 2 -T "$PGBENCH_SECONDS" -f "$WORK/insert.sql" "$PGURL" >"$WORK/pgbench64.txt" 2>&1
  PG64_TPS=$(pgbench_tps "$WORK/pgbench64.txt")
  PG64_LAT=$(pgbench_lat "$WORK/pgbench64.txt")
fi
timeout $((PGBENCH_SECONDS + 60)) pgbench -n -M prepared -c 8 -j 2 -T "$PGBENCH_SECONDS" -f "$WORK/insert_queue.sql" "$PGURL" >"$WORK/pgbench_queue.txt" 2>&1
PG8_TPS=$(pgbench_tps "$WORK/pgbench.txt")
PG8_LAT=$(pgbench_lat "$WORK/pgbench.txt")
PG32_TPS=$(pgbench_tps "$WORK/pgbench32.txt")
PG32_LAT=$(pgbench_lat "$WORK/pgbench32.txt")
# The reference is the best of them: the stricter comparison.
PG_TPS=$PG8_TPS
PG_REF_CLIENTS=8
if [[ -n $PG32_TPS && -n $PG_TPS && $PG32_TPS -gt $PG_TPS ]]; then PG_TPS=$PG32_TPS; PG_REF_CLIENTS=32; fi
if [[ -n $PG64_TPS && -n $PG_TPS && $PG64_TPS -gt $PG_TPS ]]; then PG_TPS=$PG64_TPS; PG_REF_CLIENTS=64; fi
PGQ_TPS=$(pgbench_tps "$WORK/pgbench_queue.txt")
PGQ_LAT=$(pgbench_lat "$WORK/pgbench_queue.txt")
[[ -n $PG_TPS ]] || { echo "bench: pgbench failed:" >&2; tail -5 "$WORK/pgbench.txt" >&2; exit 1; }
log "pgbench: $PG8_TPS / $PG32_TPS / ${PG64_TPS:-n/a} inserts/s (scratch, 8 / 32 / 64 clients), $PGQ_TPS inserts/s (queued_message copy)"
# $PGDB stays for the second measurement after the queue runs.

# ---- 3. Go benchmarks ----
log "Go benchmarks"
GOBENCH_RC=0
timeout 420 go test -run '^$' -bench . -benchmem -benchtime "$GO_BENCHTIME" -timeout 400s ./envelope ./queuepg ./mediator ./pickup \
  >"$WORK/gobench.txt" 2>&1 || GOBENCH_RC=$?
[[ $GOBENCH_RC == 0 ]] || log "go benchmarks exited $GOBENCH_RC (see the report)"

# ---- 4. start to ready ----
log "start to ready"
RDB=mbench_${RUN_ID}_ready
DBS+=("$RDB")
RPORT=$(free_port)
ready_time() {
  MEDIATOR_LISTEN=127.0.0.1:$RPORT MEDIATOR_DATABASE_URL=$(db_url "$RDB") MEDIATOR_MASTER_KEY=$MASTER_KEY \
    MEDIATOR_ENDPOINT= MEDIATOR_LOG_LEVEL=warn MEDIATOR_ADMIN_LISTEN= \
    timeout 120 "$WORK/mediator-load" ready-time --json --runs "$1" --url "http://127.0.0.1:$RPORT/readyz" \
    --log "$WORK/ready.log" -- "$WORK/mediator" serve
}
ready_time 1 >"$WORK/ready_fresh.json"   # creates and migrates the database
ready_time 5 >"$WORK/ready_existing.json"
MEDIATOR_LISTEN=127.0.0.1:$RPORT MEDIATOR_DATABASE_URL= MEDIATOR_MASTER_KEY= MEDIATOR_ENDPOINT= MEDIATOR_ADMIN_LISTEN= \
  timeout 60 "$WORK/mediator-load" ready-time --json --runs 5 --url "http://127.0.0.1:$RPORT/readyz" \
  --log "$WORK/ready.log" -- "$WORK/mediator" serve >"$WORK/ready_memory.json"
psql -qtAX "$ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$RDB\" WITH (FORCE)" >/dev/null

# ---- 5. one instance ----
ODB=mbench_${RUN_ID}_one
new_db "$ODB"
OURL=$(db_url "$ODB")
P1=$(free_port)
LOAD_DB=$OURL
log "one instance on :$P1"
start_mediator one "$P1" "$OURL"
ONE_PID=$LAST_PID
ONE_ADMIN=$LAST_ADMIN
T1=http://127.0.0.1:$P1
COMMON=(--wallets "$LOAD_WALLETS" --senders "$LOAD_SENDERS" --messages "$LOAD_MESSAGES" --timeout 180s --settle 2s)
QUEUE_ARGS=(--wallets "$LOAD_WALLETS" --senders "$QUEUE_SENDERS" --messages "$QUEUE_MESSAGES" --timeout 180s --settle 2s)
load_batched one_queue "$ONE_PID" "$ONE_ADMIN" --target "$T1" --mode queue --prepack "${COMMON[@]}"
# Each wide run is bracketed by pgbench runs with the reference's clients
# (the last bracket is "pgbench again" below): a VM's speed drifts over
# minutes by more than the margin the target is about, and a run compared
# with the pgbench rates measured just before and just after it sees the
# same machine.
QUEUE_RUNS=()
BRACKETS=()
pgbench_ref() { # NAME SECONDS → $WORK/NAME.txt
  psql -qtAX "$PGURL" -c "TRUNCATE scratch" >/dev/null
  timeout $(($2 + 60)) pgbench -n -M prepared -c "$PG_REF_CLIENTS" -j 2 -T "$2" -f "$WORK/insert.sql" "$PGURL" >"$WORK/$1.txt" 2>&1 || true
}
for i in $(seq "$QUEUE_REPEATS"); do
  log "pgbench bracket $i: $PG_REF_CLIENTS clients for ${PAIR_SECONDS}s"
  pgbench_ref "pgbench_bracket_$i" "$PAIR_SECONDS"
  BRACKETS+=("$(pgbench_tps "$WORK/pgbench_bracket_$i.txt")")
  load_batched "one_queue_wide_$i" "$ONE_PID" "$ONE_ADMIN" --target "$T1" --mode queue --prepack "${QUEUE_ARGS[@]}"
  QUEUE_RUNS+=("one_queue_wide_$i")
done
# pgbench again with the reference's clients: the last run's second bracket.
log "pgbench again with $PG_REF_CLIENTS clients"
pgbench_ref pgbench_again "$PGBENCH_SECONDS"
BRACKETS+=("$(pgbench_tps "$WORK/pgbench_again.txt")")
PG_AGAIN_TPS=$(pgbench_tps "$WORK/pgbench_again.txt")
PG_AGAIN_LAT=$(pgbench_lat "$WORK/pgbench_again.txt")
for b in "${BRACKETS[@]}"; do
  if [[ -n $b && $b -gt $PG_TPS ]]; then PG_TPS=$b; fi
done
log "pgbench again: ${PG_AGAIN_TPS:-failed} inserts/s; reference $PG_TPS"
psql -qtAX "$ADMIN_URL" -c "DROP DATABASE \"$PGDB\" WITH (FORCE)" >/dev/null
load_batched one_live "$ONE_PID" "$ONE_ADMIN" --target "$T1" --mode live --prepack "${COMMON[@]}"
load one_poll "$ONE_PID" --target "$T1" --mode poll --poll-interval 200ms --prepack "${COMMON[@]}"
load one_live_paced "$ONE_PID" --target "$T1" --mode live --rate 500 "${COMMON[@]}"

log "idle sockets: $IDLE_SOCKETS on a fresh process (open files limit $NOFILE)"
stop_pid "$ONE_PID"
start_mediator one_idle "$P1" "$OURL"
ONE_PID=$LAST_PID
IDLE_RC=0
timeout 300 "$WORK/mediator-load" --json --log-level warn --target "$T1" --idle-sockets "$IDLE_SOCKETS" \
  --idle-wallets 20 --hold "$IDLE_HOLD" --watch-pid "$ONE_PID" --timeout 240s \
  >"$WORK/idle.json" 2>"$WORK/idle.err" || IDLE_RC=$?
[[ -s $WORK/idle.json ]] || echo '{}' >"$WORK/idle.json"
log "idle: exit $IDLE_RC, $(jq -r '"\(.opened) open, RSS \(.rssHeldMB) MB"' "$WORK/idle.json")"
# The sockets all closed at once; give the instance a clean start for the
# latency probes, and record how it coped with the mass disconnect.
sleep 2
UNREG_FAILED=$(grep -c 'unregister live session failed' "$WORK/one_idle.log" || true)
HTTP_5XX=$(grep -c 'status=5[0-9][0-9]' "$WORK/one_idle.log" || true)
REREGISTERED=$(grep -o 'missing from the registry.*sessions=[0-9]*' "$WORK/one_idle.log" | sed 's/.*sessions=//' | paste -sd+ - | bc 2>/dev/null || echo 0)
stop_pid "$ONE_PID"
start_mediator one_probe "$P1" "$OURL"
ONE_PID=$LAST_PID

log "delivery-request latency, empty queue table"
timeout 240 "$WORK/mediator-load" pickup-latency --json --target "$T1" --requests "$PICKUP_REQUESTS" \
  --payload-bytes "$PAYLOAD_BYTES" >"$WORK/pickup_empty.json" 2>"$WORK/pickup_empty.err" || true
[[ -s $WORK/pickup_empty.json ]] || echo '{}' >"$WORK/pickup_empty.json"
log "inserting a backlog of $BACKLOG_ROWS messages of 20,000 other wallets"
BACKLOG_START=$(date +%s.%N)
timeout 300 psql -qX -v ON_ERROR_STOP=1 -v payload="$PAYLOAD" -v rows="$BACKLOG_ROWS" "$OURL" >/dev/null <<'SQL'
INSERT INTO queued_message (connection_id, recipient_dids, recipient_key, encrypted_message, size_bytes, created_at)
SELECT md5('backlog-' || (g % 20000)::text)::uuid, ARRAY['did:key:backlog'], 'backlog-key',
       convert_to(:'payload', 'UTF8'), length(:'payload'), now() - interval '1 hour' + g * interval '1 microsecond'
FROM generate_series(1, :rows) g;
ANALYZE queued_message;
SQL
BACKLOG_SECONDS=$(echo "$BACKLOG_START $(date +%s.%N)" | awk '{printf "%.1f", $2-$1}')
QUEUE_SIZE=$(psql -qtAX "$OURL" -c "select pg_size_pretty(pg_total_relation_size('queued_message'))")
log "delivery-request latency with the backlog ($QUEUE_SIZE)"
timeout 240 "$WORK/mediator-load" pickup-latency --json --target "$T1" --requests "$PICKUP_REQUESTS" \
  --payload-bytes "$PAYLOAD_BYTES" >"$WORK/pickup_backlog.json" 2>"$WORK/pickup_backlog.err" || true
[[ -s $WORK/pickup_backlog.json ]] || echo '{}' >"$WORK/pickup_backlog.json"
load one_live_backlog "$ONE_PID" --target "$T1" --mode live --prepack "${COMMON[@]}"
ONE_RSS_END=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$ONE_PID/status" 2>/dev/null || echo "?")
stop_pid "$ONE_PID"
psql -qtAX "$ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$ODB\" WITH (FORCE)" >/dev/null

# ---- 6. two instances ----
TDB=mbench_${RUN_ID}_two
new_db "$TDB"
TURL=$(db_url "$TDB")
PA=$(free_port)
PB=$(free_port)
PP=$(free_port)
LOAD_DB=$TURL
log "two instances on :$PA and :$PB behind the round-robin proxy on :$PP"
EPS="http://127.0.0.1:$PP,ws://127.0.0.1:$PP"
start_mediator two_a "$PA" "$TURL" "$EPS"
A_PID=$LAST_PID
start_mediator two_b "$PB" "$TURL" "$EPS"
B_PID=$LAST_PID
"$WORK/rrproxy" -listen "127.0.0.1:$PP" "http://127.0.0.1:$PA" "http://127.0.0.1:$PB" >"$WORK/rrproxy.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$PP/healthz" 2>/dev/null && break; sleep 0.05; done
load two_proxy_live "$A_PID" --target "http://127.0.0.1:$PP" --mode live --prepack "${COMMON[@]}"
load two_direct_live "$A_PID" --direct --target "http://127.0.0.1:$PA" --target "http://127.0.0.1:$PB" \
  --mode live --prepack "${COMMON[@]}"
load two_direct_poll "$A_PID" --direct --target "http://127.0.0.1:$PA" --target "http://127.0.0.1:$PB" \
  --mode poll --poll-interval 200ms --prepack "${COMMON[@]}"
stop_pid "$A_PID"
stop_pid "$B_PID"
LOAD_END=$(loadavg)
TOTAL_SECONDS=$(($(date +%s) - START_TS))

# ---- report ----
log "writing $REPORT"
j() { jq -r "($2) // \"–\"" "$WORK/$1.json" 2>/dev/null || echo "–"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b+0 > 0) printf "%.2f", a/b; else printf "–" }'; }
verdict() { # value op limit
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    if (v == "" || v == "–") { print "not measured"; exit }
    ok = (op == ">=" && v+0 >= l+0) || (op == "<=" && v+0 <= l+0) || (op == "<" && v+0 < l+0) || (op == "==" && v+0 == l+0)
    print (ok ? "met" : "**not met**") }'
}
RUNS=(one_queue "${QUEUE_RUNS[@]}" one_live one_poll one_live_paced one_live_backlog two_proxy_live two_direct_live two_direct_poll)
LOST=0
DUPS=0
ERRS=0
for r in "${RUNS[@]}"; do
  LOST=$((LOST + $(jq -r '.lost // 0' "$WORK/$r.json")))
  DUPS=$((DUPS + $(jq -r '.duplicates // 0' "$WORK/$r.json")))
  ERRS=$((ERRS + $(jq -r '(.errors // 0) + (if .timedOut then 1 else 0 end)' "$WORK/$r.json")))
done
FWD_QUEUE8=$(j one_queue '.forwardsPerSec | if type == "number" then round else null end')
# The median of the wide queue runs.
FWD_QUEUE=$(for r in "${QUEUE_RUNS[@]}"; do jq -r '.forwardsPerSec // empty | round' "$WORK/$r.json"; done | sort -n |
  awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
FWD_QUEUE_ALL=$(for r in "${QUEUE_RUNS[@]}"; do jq -r '.forwardsPerSec // "–" | if type == "number" then round else . end' "$WORK/$r.json"; done | paste -sd, - | sed 's/,/, /g')
FWD_LIVE=$(j one_live '.forwardsPerSec | if type == "number" then round else null end')
R_QUEUE=$(ratio "$FWD_QUEUE" "$PG_TPS")
# Run i against the better of the pgbench runs just before and after it.
PAIRS=()
for i in "${!QUEUE_RUNS[@]}"; do
  f=$(jq -r '.forwardsPerSec // empty | round' "$WORK/${QUEUE_RUNS[$i]}.json")
  b=$(printf '%s\n' "${BRACKETS[$i]:-}" "${BRACKETS[$((i + 1))]:-}" | sort -n | tail -1)
  PAIRS+=("$(ratio "$f" "$b") ($f ÷ ${b:-–})")
done
R_PAIRED=$(printf '%s\n' "${PAIRS[@]}" | awk '$1 ~ /^[0-9.]+$/ { print $1 }' | sort -n |
  awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "–" }')
PAIRS_ALL=$(printf '%s\n' "${PAIRS[@]}" | paste -sd, - | sed 's/,/, /g')
R_QUEUE8=$(ratio "$FWD_QUEUE8" "$PG8_TPS")
R_LIVE=$(ratio "$FWD_LIVE" "$PG_TPS")
RSS=$(j idle .rssHeldMB)
P50_EMPTY=$(j pickup_empty .deliveryRequestMs.p50)
P50_BACKLOG=$(j pickup_backlog .deliveryRequestMs.p50)
R_BACKLOG=$(ratio "$P50_BACKLOG" "$P50_EMPTY")
CROSS_P99=$(j two_direct_live .crossLatencyMs.p99)
READY_EXISTING=$(j ready_existing .medianMs)
READY_FRESH=$(j ready_fresh .medianMs)

run_row() { # name label
  local f=$WORK/$1.json
  jq -r --arg name "$2" --arg cpu "$(cat "$WORK/$1.cpu" 2>/dev/null || echo –)" '
    "| \($name) | \(.mode // "–") | \(.wallets // "–")/\(.senders // "–")/\(.messages // "–") | \(.forwardsPerSec // "–" | if type == "number" then round else . end) | \(.deliveredPerSec // "–" | if type == "number" then round else . end) | \(.acceptLatencyMs.p50 // "–") / \(.acceptLatencyMs.p99 // "–") | \(.latencyMs.p50 // "–") / \(.latencyMs.p99 // "–") | \(.sentLatencyMs.p50 // "–") / \(.sentLatencyMs.p99 // "–") | \(.errors // "–") | \(.lost // "–") | \(.duplicates // "–") | \(.clientCpuSeconds // "–") | \($cpu) |"' "$f"
}

{
  echo "# Mediator benchmark report"
  echo
  echo "Generated $(date -u '+%Y-%m-%d %H:%M UTC') by \`scripts/bench.sh\` at commit \`$GIT_REV\`"
  echo "($GIT_DIRTY uncommitted changes in the working tree), in ${TOTAL_SECONDS}s."
  echo "Mediator binary: $MEDIATOR_SOURCE. Everything ran on this machine over loopback: PostgreSQL, the mediator, the load generator."
  echo
  echo "## Machine"
  echo
  echo "| | |"
  echo "| --- | --- |"
  echo "| CPUs (nproc) | $NPROC × $CPU_MODEL |"
  echo "| RAM | $MEM_TOTAL |"
  echo "| Kernel | $KERNEL |"
  echo "| Go | $GO_VERSION |"
  echo "| PostgreSQL | $PG_VERSION (pgbench $PGBENCH_VERSION) |"
  echo "| Durability | $PG_SETTINGS (server settings, used by pgbench and the mediator alike) |"
  echo "| Load average | $LOAD_START at start, $LOAD_END at the end |"
  echo "| Open files limit | $NOFILE |"
  echo
  echo "## Targets"
  echo
  echo "| Target | Measured | Goal | |"
  echo "| --- | --- | --- | --- |"
  echo "| Forwards/s on one instance ÷ pgbench inserts/s (queue mode: accepting and queueing only; $QUEUE_SENDERS senders; each run ÷ the better of the pgbench runs with $PG_REF_CLIENTS clients just before and just after it, median of $QUEUE_REPEATS: $PAIRS_ALL) | $R_PAIRED | ≥ 0.6 | $(verdict "$R_PAIRED" ">=" 0.6) |"
  echo "| Same, median of the runs ($FWD_QUEUE_ALL) ÷ the best pgbench rate of the whole report (stricter: the VM's drift between them counts against the mediator) | $R_QUEUE ($FWD_QUEUE ÷ $PG_TPS) | reported | |"
  echo "| Same with $LOAD_SENDERS senders ÷ pgbench with 8 clients | $R_QUEUE8 ($FWD_QUEUE8 ÷ $PG8_TPS) | reported | |"
  echo "| Same with $LOAD_SENDERS senders, wallets live on WebSockets during the run (each message also delivered and acknowledged) | $R_LIVE ($FWD_LIVE ÷ $PG_TPS) | reported | |"
  echo "| RSS with $(j idle .opened) idle live WebSockets | $RSS MB | ≤ 300 MB | $(verdict "$RSS" "<=" 300) |"
  echo "| Delivery-request p50, $BACKLOG_ROWS other messages queued ÷ empty table | $R_BACKLOG ($P50_BACKLOG ms ÷ $P50_EMPTY ms) | ≤ 1.5 | $(verdict "$R_BACKLOG" "<=" 1.5) |"
  echo "| Cross-instance live delivery p99 (accepted on one instance, pushed by the other) | $CROSS_P99 ms | reported | |"
  echo "| Start to ready (existing database, median of 5) | $READY_EXISTING ms | < 1000 ms | $(verdict "$READY_EXISTING" "<" 1000) |"
  echo "| Lost / duplicate deliveries over all load runs | $LOST / $DUPS (errors: $ERRS) | 0 / 0 | $(verdict "$((LOST + DUPS))" "==" 0) |"
  echo
  echo "## Raw PostgreSQL limit (pgbench)"
  echo
  echo "One row per transaction, \`pgbench -n -M prepared -c C -j 2 -T $PGBENCH_SECONDS\`, payload: a packed message"
  echo "like the ones the load runs forward ($PAYLOAD_LEN bytes of bytea). The best client count, $PG_REF_CLIENTS, is measured again"
  echo "around each wide queue-mode run; the best scratch-table rate of all ($PG_TPS/s) is the strict reference."
  echo
  echo "| Table | Clients | Inserts/s | Mean latency |"
  echo "| --- | --- | --- | --- |"
  echo "| scratch (uuid primary key, connection id, bytea, timestamp) | 8 | $PG8_TPS | $PG8_LAT ms |"
  echo "| scratch | 32 | $PG32_TPS | $PG32_LAT ms |"
  [[ -z $PG64_TPS ]] || echo "| scratch | 64 | $PG64_TPS | $PG64_LAT ms |"
  for i in $(seq "$QUEUE_REPEATS"); do
    echo "| scratch, before queue-mode run $i (emptied first; ${PAIR_SECONDS}s) | $PG_REF_CLIENTS | $(pgbench_tps "$WORK/pgbench_bracket_$i.txt") | $(pgbench_lat "$WORK/pgbench_bracket_$i.txt") ms |"
  done
  echo "| scratch, again after the queue-mode runs (emptied first) | $PG_REF_CLIENTS | ${PG_AGAIN_TPS:-failed} | ${PG_AGAIN_LAT:-} ms |"
  echo "| copy of queued_message (same columns and indexes as the mediator's table) | 8 | $PGQ_TPS | $PGQ_LAT ms |"
  echo
  echo "## Load runs (cmd/mediator-load)"
  echo
  echo "Before each run the queue tables are vacuumed (\`VACUUM (ANALYZE)\`), as autovacuum keeps them (autovacuum=$PG_AUTOVACUUM on this server)."
  echo "Forwards are packed before the clock starts (\`--prepack\`, except the paced run), $PAYLOAD_BYTES-byte plaintexts"
  echo "($(j one_live .innerBytes) bytes stored per message). *Accepted → decrypted* starts when the forward's POST"
  echo "returned; a push can beat that answer to the wallet ($(j one_live .earlyDeliveries) of the messages of the"
  echo "one-instance live run), which counts as 0. *Sent → decrypted* starts when the POST was sent."
  echo "Queue mode: the wallets stay away while the forwards arrive and drain over HTTP afterwards."
  echo
  echo "| Run | Mode | K/S/N | Forwards/s | Delivered/s | POST p50 / p99 ms | Accepted → decrypted p50 / p99 ms | Sent → decrypted p50 / p99 ms | Errors | Lost | Dup. | Client CPU s | Mediator CPU s |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  run_row one_queue "one instance"
  for r in "${QUEUE_RUNS[@]}"; do run_row "$r" "one instance, run ${r##*_}"; done
  run_row one_live "one instance"
  run_row one_poll "one instance, poll every 200 ms"
  run_row one_live_paced "one instance, paced at 500/s, packed during the run"
  run_row one_live_backlog "one instance, $BACKLOG_ROWS-message backlog"
  run_row two_proxy_live "two instances via rrproxy"
  run_row two_direct_live "two instances, direct"
  run_row two_direct_poll "two instances, direct, poll"
  echo
  echo "Forwards per insert statement (group commit, from the instance's /metrics):"
  echo
  echo "| Run | Forwards per statement |"
  echo "| --- | --- |"
  for r in one_queue "${QUEUE_RUNS[@]}" one_live; do echo "| $r | $(cat "$WORK/$r.batch" 2>/dev/null || echo –) |"; done
  echo
  echo "Two instances, direct live run, split by where the forward was accepted:"
  echo
  echo "| | Messages | p50 ms | p90 ms | p99 ms | max ms |"
  echo "| --- | --- | --- | --- | --- | --- |"
  jq -r '"| same instance as the wallet'"'"'s socket | \(.sameLatencyMs.count // "–") | \(.sameLatencyMs.p50 // "–") | \(.sameLatencyMs.p90 // "–") | \(.sameLatencyMs.p99 // "–") | \(.sameLatencyMs.max // "–") |",
         "| the other instance (cross-instance) | \(.crossLatencyMs.count // "–") | \(.crossLatencyMs.p50 // "–") | \(.crossLatencyMs.p90 // "–") | \(.crossLatencyMs.p99 // "–") | \(.crossLatencyMs.max // "–") |"' "$WORK/two_direct_live.json"
  echo
  echo "## Idle live WebSockets"
  echo
  jq -r '"\(.opened // 0) of \(.sockets // 0) sockets opened (live delivery on, \(.wallets // 0) wallets) in \(.openSeconds // "–") s, held \(.holdSeconds // "–") s; \(.failed // 0) failed, \(.closedEarly // 0) closed early.",
         "",
         "| Mediator RSS | MB |",
         "| --- | --- |",
         "| before opening (after the wallets connected) | \(if .before then (.before.rssKiB/1024*10|round/10) else "–" end) |",
         "| holding the sockets | \(.rssHeldMB // "–") |",
         "| high-water mark | \(if .held then (.held.peakKiB/1024*10|round/10) else "–" end) |",
         "| per socket | \(.perSocketKiB // "–") KiB |"' "$WORK/idle.json"
  echo
  echo "When the $IDLE_SOCKETS sockets closed at once, the instance logged $UNREG_FAILED failed session unregistrations"
  echo "and answered $HTTP_5XX HTTP requests with 5xx; while they opened, it re-registered ${REREGISTERED:-0} sessions it found"
  echo "missing from the registry (log of that process)."
  echo
  echo "## Delivery-request latency"
  echo
  echo "One wallet over HTTP; each round queues 10 messages for it, then times a delivery-request (limit 10) and the"
  echo "messages-received that follows (round trip only: packing the request and opening the reply are not timed)."
  echo "The backlog: $BACKLOG_ROWS messages of 20,000 other connections inserted with generate_series (${BACKLOG_SECONDS}s), then ANALYZE; queued_message is then $QUEUE_SIZE."
  echo
  echo "| Queue table | Requests | delivery-request p50 / p90 / p99 ms | messages-received p50 / p99 ms | Errors |"
  echo "| --- | --- | --- | --- | --- |"
  for f in pickup_empty pickup_backlog; do
    label="empty"
    [[ $f == pickup_backlog ]] && label="$BACKLOG_ROWS other messages"
    jq -r --arg l "$label" '"| \($l) | \(.deliveryRequestMs.count // "–") | \(.deliveryRequestMs.p50 // "–") / \(.deliveryRequestMs.p90 // "–") / \(.deliveryRequestMs.p99 // "–") | \(.messagesReceivedMs.p50 // "–") / \(.messagesReceivedMs.p99 // "–") | \(.errors // "–") |"' "$WORK/$f.json"
  done
  echo
  echo "## Start to ready"
  echo
  echo "Process start to the first 200 on /readyz, polled every 2 ms."
  echo
  echo "| Database | Starts | Median ms | Min ms | Max ms |"
  echo "| --- | --- | --- | --- | --- |"
  for f in ready_fresh ready_existing ready_memory; do
    case $f in ready_fresh) label="fresh (created and migrated at start)" ;; ready_existing) label="existing" ;; *) label="none (in-memory)" ;; esac
    jq -r --arg l "$label" '"| \($l) | \(.readyMs | length) | \(.medianMs) | \(.minMs) | \(.maxMs) |"' "$WORK/$f.json" 2>/dev/null || echo "| $label | – | – | – | – |"
  done
  echo
  echo "## Go benchmarks"
  echo
  echo "\`go test -run '^\$' -bench . -benchmem -benchtime $GO_BENCHTIME ./envelope ./queuepg ./mediator ./pickup\` (exit $GOBENCH_RC):"
  echo
  echo '```'
  grep -E '^(Benchmark|ok|FAIL|PASS|pkg:|goos|cpu:|---)' "$WORK/gobench.txt" | grep -vE '^(goos|goarch)' || true
  echo '```'
  echo
  echo "The mediator's RSS at the end of the one-instance runs: $ONE_RSS_END MB."
} >"$REPORT"
log "done in ${TOTAL_SECONDS}s: $REPORT"
