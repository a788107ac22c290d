#!/usr/bin/env bash
# Runs the topology of configs/docker-compose.yml on this machine, without
# Docker: N `mediator serve` processes on one PostgreSQL database behind
# Debian's nginx (round robin, no stickiness, WebSocket pass-through).
#
# Usage:
#   scripts/cluster.sh [start] [flags] [-- extra `mediator serve` flags]
#   scripts/cluster.sh stop   --dir DIR [--keep]
#   scripts/cluster.sh status --dir DIR
#
# start flags:
#   --instances N      mediator processes (default 2)
#   --port PORT        nginx port (default: a free one)
#   --bind ADDR        nginx listen address (default 127.0.0.1; 0.0.0.0 for phones on the LAN)
#   --public-url URL   URL advertised to wallets (default http://BIND:PORT); ws(s) is derived
#   --database NAME    use (and keep) this database; default: a fresh one, dropped at stop
#   --admin-url URL    PostgreSQL URL with the right to create databases
#                      (default $MEDIATOR_TEST_DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres)
#   --dir DIR          working directory, new or empty (default: a new one under ${TMPDIR:-/tmp})
#   --binary PATH      run this mediator binary instead of building ./cmd/mediator
#   --timeout SECONDS  how long each step may take to become ready (default 60)
#   --detach           return once everything is ready and leave it running
#   --keep             keep DIR (logs) when stopping
#
# Without --detach it stays in the foreground until Ctrl-C, then stops
# everything and drops the fresh database. With --detach it leaves the
# processes running; `scripts/cluster.sh stop --dir DIR` stops them. Either
# way DIR/cluster.env (KEY='value' lines, shell-sourceable) tells tests and
# scripts where everything is: PROXY_URL, WS_URL, INVITATION_URL,
# DATABASE_URL, INSTANCE_URLS, ADMIN_URLS, PIDS, NGINX_PID, LOG_DIR, ...
# Environment: MEDIATOR_MASTER_KEY (default: a random key, written to
# DIR/master-key) and any other MEDIATOR_* setting are passed to the instances.
#
# Needs: Go (unless --binary), curl, psql, PostgreSQL, and nginx (installed
# with apt-get when missing and run as root). Exit status 3 means nginx is
# not available (and says why); 1 any other failure; 2 a usage error.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
me="cluster.sh"
say() { printf '%s: %s\n' "$me" "$*" >&2; }
die() { say "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }

# --- arguments ----------------------------------------------------------------

cmd=start
case "${1:-}" in
  start|stop|status) cmd=$1; shift ;;
  -h|--help|help) usage 0 ;;
esac

instances=2 port=0 bind=127.0.0.1 public_url="" database="" dir="" binary="" timeout=60
detach=0 keep=0 extra=()
admin_url=${MEDIATOR_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
need_arg() { if [ $# -lt 2 ] || [ -z "$2" ]; then say "$1 needs a value"; usage 2; fi; }
while [ $# -gt 0 ]; do
  case "$1" in
    --instances) need_arg "$@"; instances=$2; shift 2 ;;
    --port) need_arg "$@"; port=$2; shift 2 ;;
    --bind) need_arg "$@"; bind=$2; shift 2 ;;
    --public-url) need_arg "$@"; public_url=${2%/}; shift 2 ;;
    --database) need_arg "$@"; database=$2; shift 2 ;;
    --admin-url) need_arg "$@"; admin_url=$2; shift 2 ;;
    --dir) need_arg "$@"; dir=$2; shift 2 ;;
    --binary) need_arg "$@"; binary=$2; shift 2 ;;
    --timeout) need_arg "$@"; timeout=$2; shift 2 ;;
    --detach) detach=1; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    --) shift; extra=("$@"); break ;;
    *) say "unknown argument $1"; usage 2 ;;
  esac
done

# --- helpers ------------------------------------------------------------------

# alive PID: the process exists and is not a zombie.
alive() {
  local pid=$1 state
  [ -n "$pid" ] || return 1
  if [ -r "/proc/$pid/stat" ]; then
    state=$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
  else
    kill -0 "$pid" 2>/dev/null
  fi
}

# ours PID WORD: the process is alive and its command line mentions WORD
# (guards against signalling a recycled pid).
ours() {
  alive "$1" || return 1
  [ -r "/proc/$1/cmdline" ] || return 0
  tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}

# wait_gone SECONDS PID...: waits until none of the processes is alive.
wait_gone() {
  local deadline=$((SECONDS + $1)) p any
  shift
  while :; do
    any=0
    for p in "$@"; do alive "$p" && any=1; done
    [ "$any" = 0 ] && return 0
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

used_ports=" "
free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    case "$used_ports" in *" $p "*) continue ;; esac
    if ! port_in_use "$p"; then used_ports+="$p "; echo "$p"; return 0; fi
  done
  die "found no free TCP port"
}

# env_get FILE KEY: the value of KEY='value' in FILE.
env_get() {
  local line
  line=$(grep -m1 "^$2=" "$1" 2>/dev/null) || return 0
  line=${line#*=}
  line=${line#\'}
  line=${line%\'}
  printf '%s' "${line//\'\\\'\'/\'}"
}

# http_status URL: the HTTP status of a GET (000 if nothing answered).
http_status() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true; }

psql_admin() { PGCONNECT_TIMEOUT=5 psql "$admin_url" -X -v ON_ERROR_STOP=1 -Atq "$@"; }

# db_url_for NAME: the admin URL with its database replaced by NAME.
db_url_for() {
  local base=${admin_url%%\?*} query=""
  [ "$base" != "$admin_url" ] && query="?${admin_url#*\?}"
  case "$base" in
    postgres://*/*|postgresql://*/*) base=${base%/*} ;;
    postgres://*|postgresql://*) ;;
    *) die "--admin-url must be a postgres:// URL (got $(redact "$admin_url"))" ;;
  esac
  printf '%s/%s%s' "$base" "$1" "$query"
}

redact() { printf '%s' "$1" | sed -E 's#(://[^:/@]+):[^@]*@#\1:xxxxx@#'; }

# --- stop -----------------------------------------------------------------------

# stop_all DIR: stops nginx, then the mediators (gracefully: they hand back
# in-flight messages), drops the database if this script created it, and
# removes DIR unless --keep. Reads everything from DIR/cluster.env.
stop_all() {
  local d=$1 env=$1/cluster.env ngx pids p survivors=() db drop
  ngx=$(env_get "$env" NGINX_PID)
  pids=$(env_get "$env" PIDS)
  if [ -n "$ngx" ] && ours "$ngx" "$d/nginx"; then
    kill -TERM "$ngx" 2>/dev/null || true
    if ! wait_gone 10 "$ngx"; then
      say "nginx ($ngx) did not stop in 10s; killing its process group"
      kill -KILL -- "-$ngx" 2>/dev/null || kill -KILL "$ngx" 2>/dev/null || true
    fi
  fi
  for p in $pids; do
    if ours "$p" "$d"; then kill -TERM "$p" 2>/dev/null || true; survivors+=("$p"); fi
  done
  if [ ${#survivors[@]} -gt 0 ] && ! wait_gone 30 "${survivors[@]}"; then
    for p in "${survivors[@]}"; do
      alive "$p" && { say "mediator $p did not stop in 30s; killing it"; kill -KILL "$p" 2>/dev/null || true; }
    done
    wait_gone 5 "${survivors[@]}" || true
  fi
  drop=$(env_get "$env" DROP_DATABASE)
  db=$(env_get "$env" DATABASE_NAME)
  if [ "$drop" = 1 ] && [ -n "$db" ]; then
    admin_url=$(env_get "$env" ADMIN_DATABASE_URL)
    if ! psql_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1; then
      say "could not drop database $db (drop it by hand: DROP DATABASE \"$db\" WITH (FORCE))"
    fi
  fi
  if [ "$keep" = 1 ]; then
    say "kept $d"
  elif [ -f "$env" ]; then
    rm -rf "${d:?}/bin" "${d:?}/logs" "${d:?}/nginx" "${d:?}/master-key" "${d:?}/cluster.env"
    rmdir "$d" 2>/dev/null || true
  fi
}

if [ "$cmd" = stop ] || [ "$cmd" = status ]; then
  [ -n "$dir" ] || { say "$cmd needs --dir DIR (the directory start printed)"; usage 2; }
  [ -f "$dir/cluster.env" ] || die "no cluster in $dir (no cluster.env)"
  dir=$(cd "$dir" && pwd)
  if [ "$cmd" = status ]; then
    up=0 total=0
    for p in $(env_get "$dir/cluster.env" NGINX_PID) $(env_get "$dir/cluster.env" PIDS); do
      total=$((total + 1))
      if ours "$p" "$dir"; then up=$((up + 1)); echo "$p running"; else echo "$p gone"; fi
    done
    cat "$dir/cluster.env"
    [ "$up" = "$total" ] || exit 1
    exit 0
  fi
  stop_all "$dir"
  say "stopped"
  exit 0
fi

# --- start: checks --------------------------------------------------------------

case "$instances" in ''|*[!0-9]*) die "--instances must be a number" ;; esac
if [ "$instances" -lt 1 ] || [ "$instances" -gt 64 ]; then die "--instances must be between 1 and 64"; fi
case "$port" in ''|*[!0-9]*) die "--port must be a number" ;; esac
case "$timeout" in ''|*[!0-9]*) die "--timeout must be a number of seconds" ;; esac
if [ -n "$database" ] && ! [[ "$database" =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]]; then
  die "--database: use letters, digits and _ (at most 63), starting with a letter or _"
fi
command -v curl >/dev/null || die "curl is required (apt-get install curl)"
command -v psql >/dev/null || die "psql is required to create and drop the database (apt-get install postgresql-client)"
[ -n "$binary" ] || command -v go >/dev/null || die "Go is required to build the mediator (https://go.dev/dl/), or pass --binary PATH"

# find_nginx: prints the nginx binary, installing Debian's package as root
# if there is none. Exits 3, saying why, when nginx cannot be had.
find_nginx() {
  local n
  for n in "$(command -v nginx 2>/dev/null || true)" /usr/sbin/nginx /usr/local/sbin/nginx /usr/local/nginx/sbin/nginx; do
    [ -n "$n" ] && [ -x "$n" ] && { echo "$n"; return 0; }
  done
  if [ "$(id -u)" != 0 ]; then
    say "nginx is not installed and this user is not root, so it cannot be installed here."
    say "Install it once with: sudo apt-get install nginx-light   (or: sudo apt-get install nginx)"
    exit 3
  fi
  if ! command -v apt-get >/dev/null; then
    say "nginx is not installed and there is no apt-get to install it: install nginx with this system's package manager"
    exit 3
  fi
  say "nginx is not installed: installing Debian's nginx-light (apt-get) ..."
  local log
  log=$(mktemp)
  export DEBIAN_FRONTEND=noninteractive
  if ! { timeout 300 apt-get -o DPkg::Lock::Timeout=120 -qq update &&
         { timeout 300 apt-get -o DPkg::Lock::Timeout=120 -qq install -y --no-install-recommends nginx-light ||
           timeout 300 apt-get -o DPkg::Lock::Timeout=120 -qq install -y --no-install-recommends nginx; }; } >"$log" 2>&1; then
    say "installing nginx with apt-get failed:"
    tail -n 20 "$log" >&2
    rm -f "$log"
    exit 3
  fi
  rm -f "$log"
  for n in /usr/sbin/nginx "$(command -v nginx 2>/dev/null || true)"; do
    [ -n "$n" ] && [ -x "$n" ] && { say "installed $n"; echo "$n"; return 0; }
  done
  say "apt-get installed nginx but no nginx binary was found"
  exit 3
}
nginx_bin=$(find_nginx)
nginx_version=$("$nginx_bin" -v 2>&1 | sed -n 's#.*nginx/\([0-9.]*\).*#\1#p')

if ! psql_admin -c 'SELECT 1' >/dev/null 2>&1; then
  say "PostgreSQL does not answer at $(redact "$admin_url") (or refuses this user)."
  say "  Start it (e.g. pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start),"
  say "  or give a server where you may create databases with --admin-url / MEDIATOR_TEST_DATABASE_URL."
  exit 1
fi

# --- start: working directory and cleanup -------------------------------------

if [ -z "$dir" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/mediator-cluster.XXXXXX")
else
  if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
    die "--dir $dir is not empty (stop the cluster there first: scripts/cluster.sh stop --dir $dir)"
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
fi
# 0711: nginx's worker processes (another user when started as root) may
# traverse to their directory; nothing here can be listed by others.
chmod 0711 "$dir"
mkdir -p "$dir/bin" "$dir/logs" "$dir/nginx/tmp"
chmod 0755 "$dir/nginx" "$dir/nginx/tmp"
envfile=$dir/cluster.env
: >"$envfile"
chmod 0600 "$envfile"

started=0
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  # Clean up even if whoever reads our output has gone (SIGPIPE on a write).
  trap '' PIPE
  if [ "$started" = 1 ] && [ "$rc" = 0 ]; then return; fi   # detached and ready
  if [ "$rc" != 0 ] && [ "$rc" != 130 ] && [ "$rc" != 143 ]; then
    for f in "$dir"/logs/mediator-*.log "$dir/nginx/error.log" "$dir/logs/nginx.out"; do
      [ -s "$f" ] && { say "--- last lines of $f ---"; tail -n 25 "$f" >&2; }
    done
  fi
  say "stopping ..."
  stop_all "$dir"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Written as soon as each value is known, so that a cleanup (or a later
# `stop`) finds whatever was started.
put() { printf "%s='%s'\n" "$1" "${2//\'/\'\\\'\'}" >>"$envfile"; }
put WORKDIR "$dir"
put LOG_DIR "$dir/logs"
put ADMIN_DATABASE_URL "$admin_url"

# --- start: database --------------------------------------------------------------

if [ -n "$database" ]; then
  db=$database
  put DROP_DATABASE 0
else
  db="mediator_cluster_$(date +%Y%m%d%H%M%S)_$$_$RANDOM"
  psql_admin -c "CREATE DATABASE \"$db\"" >/dev/null || die "could not create database $db"
  put DROP_DATABASE 1
fi
put DATABASE_NAME "$db"
db_url=$(db_url_for "$db")
put DATABASE_URL "$db_url"

# --- start: binary, key, ports --------------------------------------------------

if [ -n "$binary" ]; then
  [ -x "$binary" ] || die "--binary $binary is not an executable file"
  cp "$binary" "$dir/bin/mediator"
else
  version=$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)
  say "building the mediator ($version) ..."
  (cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$version" -o "$dir/bin/mediator" ./cmd/mediator) ||
    die "go build failed"
fi
bin=$dir/bin/mediator
put MEDIATOR_BIN "$bin"

master_key=${MEDIATOR_MASTER_KEY:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
(umask 077 && printf '%s\n' "$master_key" >"$dir/master-key")
put MASTER_KEY_FILE "$dir/master-key"

if [ "$port" = 0 ]; then
  port=$(free_port)
elif port_in_use "$port"; then
  die "port $port is already in use: pick another with --port, or omit it for a free one"
else
  used_ports+="$port "
fi
probe_host=$bind
case "$bind" in 0.0.0.0|'*') probe_host=127.0.0.1 ;; ::|'[::]') probe_host='[::1]' ;; esac
case "$bind" in *:*) [[ "$bind" == \[* ]] || bind="[$bind]" ;; esac
proxy_url=http://$probe_host:$port
[ -n "$public_url" ] || public_url=$proxy_url
case "$public_url" in
  https://*) ws_url=wss://${public_url#https://} ;;
  http://*) ws_url=ws://${public_url#http://} ;;
  *) die "--public-url must start with http:// or https://" ;;
esac
put PROXY_URL "$proxy_url"
put PUBLIC_URL "$public_url"
put WS_URL "$ws_url"

# --- start: mediators -------------------------------------------------------------

export MEDIATOR_DATABASE_URL=$db_url
export MEDIATOR_MASTER_KEY=$master_key
export MEDIATOR_ENDPOINT="$public_url,$ws_url"
export MEDIATOR_LOG_FORMAT=${MEDIATOR_LOG_FORMAT:-json}

say "migrating database $db ..."
if ! timeout "$timeout" "$bin" migrate >"$dir/logs/migrate.log" 2>&1; then
  cat "$dir/logs/migrate.log" >&2
  die "mediator migrate failed on $(redact "$db_url")"
fi

# Each process gets its own session (setsid): a Ctrl-C in the terminal
# reaches this script only, which then stops the processes in order.
# Called as `spawn CMD... &`: exec keeps $! the pid of CMD itself.
spawn() { if command -v setsid >/dev/null; then exec setsid "$@"; else exec "$@"; fi; }

pids=() urls=() admins=()
for i in $(seq 1 "$instances"); do
  p=$(free_port) a=$(free_port)
  spawn env MEDIATOR_LISTEN="127.0.0.1:$p" MEDIATOR_ADMIN_LISTEN="127.0.0.1:$a" \
    "$bin" serve "${extra[@]}" </dev/null >"$dir/logs/mediator-$i.log" 2>&1 &
  pids+=($!)
  urls+=("http://127.0.0.1:$p")
  admins+=("http://127.0.0.1:$a")
  sed -i '/^PIDS=/d' "$envfile"
  put PIDS "${pids[*]}"
done
put INSTANCE_URLS "${urls[*]}"
put ADMIN_URLS "${admins[*]}"

# An instance is ready when its /readyz answers 200, on the DIDComm port or
# on the admin port.
for i in "${!pids[@]}"; do
  deadline=$((SECONDS + timeout))
  while :; do
    alive "${pids[$i]}" || die "mediator $((i + 1)) (pid ${pids[$i]}) exited while starting; see $dir/logs/mediator-$((i + 1)).log"
    [ "$(http_status "${urls[$i]}/readyz")" = 200 ] && break
    [ "$(http_status "${admins[$i]}/readyz")" = 200 ] && break
    [ "$SECONDS" -lt "$deadline" ] || die "mediator $((i + 1)) not ready after ${timeout}s at ${urls[$i]}/readyz"
    sleep 0.2
  done
done

# --- start: nginx -----------------------------------------------------------------

ngx=$dir/nginx
servers=""
for u in "${urls[@]}"; do servers+="        server ${u#http://} max_fails=3 fail_timeout=10s;"$'\n'; done
without=$("$nginx_bin" -V 2>&1 | { grep -o -- '--without-http_[a-z_]*_module' || true; } |
  sed -e 's/--without-http_//' -e 's/_module$//' | tr '\n' ' ')
awk -v dir="$ngx" -v listen="$bind:$port" -v servers="${servers%$'\n'}" -v without=" $without" '
  {
    if (match($0, /# module:[a-z_]+$/)) {
      m = substr($0, RSTART + 9)
      if (index(without, " " m " ")) next
    }
    if ($0 == "@SERVERS@") { print servers; next }
    gsub(/@DIR@/, dir); gsub(/@LISTEN@/, listen)
    print
  }' "$root/configs/nginx-local.conf.tmpl" >"$ngx/nginx.conf"

ngx_args=(-p "$ngx/" -c "$ngx/nginx.conf")
# -e (nginx >= 1.19.5): the startup error log too stays out of /var/log.
if [ -n "$nginx_version" ] && [ "$(printf '%s\n1.19.5\n' "$nginx_version" | sort -V | head -n1)" = 1.19.5 ]; then
  ngx_args+=(-e "$ngx/error.log")
fi
if ! "$nginx_bin" -t -q "${ngx_args[@]}" >"$dir/logs/nginx-test.log" 2>&1; then
  cat "$dir/logs/nginx-test.log" >&2
  die "nginx rejected $ngx/nginx.conf"
fi
spawn "$nginx_bin" "${ngx_args[@]}" -g 'daemon off;' </dev/null >"$dir/logs/nginx.out" 2>&1 &
nginx_pid=$!
put NGINX_PID "$nginx_pid"
put NGINX_CONF "$ngx/nginx.conf"
put NGINX_ACCESS_LOG "$ngx/access.log"

deadline=$((SECONDS + timeout))
while [ "$(http_status "$proxy_url/readyz")" != 200 ]; do
  alive "$nginx_pid" || die "nginx exited while starting; see $ngx/error.log and $dir/logs/nginx.out"
  [ "$SECONDS" -lt "$deadline" ] || die "nothing ready behind nginx at $proxy_url after ${timeout}s"
  sleep 0.2
done
invitation=$(curl -fsS -m 5 "$proxy_url/invitation" | head -n 1) || die "GET $proxy_url/invitation failed"
[ -n "$invitation" ] || die "GET $proxy_url/invitation returned nothing"
put INVITATION_URL "$invitation"
put READY 1

# --- ready ----------------------------------------------------------------------------

{
  echo
  echo "mediator cluster ready: $instances instance(s) behind nginx, database $db"
  echo "  public URL:     $public_url  (WebSocket: $ws_url)"
  [ "$proxy_url" != "$public_url" ] && echo "  nginx listens:  $proxy_url"
  echo "  invitation URL: $invitation"
  for i in "${!pids[@]}"; do
    echo "  instance $((i + 1)): ${urls[$i]}  admin ${admins[$i]} (/metrics, /healthz, /readyz)  pid ${pids[$i]}  log $dir/logs/mediator-$((i + 1)).log"
  done
  echo "  nginx: pid $nginx_pid, access log $ngx/access.log"
  echo "  database URL:   $(redact "$db_url")"
  echo "  environment:    $envfile"
} >&2

started=1
if [ "$detach" = 1 ]; then
  say "detached; stop with: scripts/cluster.sh stop --dir $dir"
  # Print the working directory on stdout for scripts: dir=$(scripts/cluster.sh --detach).
  echo "$dir"
  exit 0
fi

say "running; Ctrl-C stops everything$([ "$keep" = 1 ] || echo " and removes $dir")"
started=0   # from here on, any exit (Ctrl-C, a crash) cleans up
# Poll until a process ends by itself (a crash) or a signal arrives; `wait`
# on a background sleep lets the INT/TERM traps run at once.
while :; do
  for i in "${!pids[@]}"; do
    alive "${pids[$i]}" || { say "mediator $((i + 1)) (pid ${pids[$i]}) ended unexpectedly"; exit 1; }
  done
  alive "$nginx_pid" || { say "nginx (pid $nginx_pid) ended unexpectedly"; exit 1; }
  sleep 1 &
  wait $! 2>/dev/null || true
done
