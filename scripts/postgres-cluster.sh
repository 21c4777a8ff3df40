#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the provider's PostgreSQL tests and benchmarks.
#
#   scripts/postgres-cluster.sh start   # initdb + start; prints the URL to export
#   scripts/postgres-cluster.sh url     # prints the URL of the running cluster
#   scripts/postgres-cluster.sh stop    # stops the cluster and deletes its directory
#
#   export TOWER_INTROSPECT_TEST_POSTGRES_URL="$(scripts/postgres-cluster.sh start)"
#
# The cluster lives in $TOWER_INTROSPECT_PG_DIR (default: a directory under ${TMPDIR:-/tmp}),
# listens on 127.0.0.1 only, on a free port, and on a Unix socket inside that directory. TCP
# logins need the password of the `postgres` role (scram-sha-256, random, kept in the cluster
# directory with mode 0600); socket logins use peer authentication. PostgreSQL refuses to run as
# root: when started by root, the server runs as the `postgres` user (with runuser).
# The binaries are looked up on PATH, then under /usr/lib/postgresql/*/bin (where Debian puts
# them), or in $PG_BIN.
set -euo pipefail

dir="${TOWER_INTROSPECT_PG_DIR:-${TMPDIR:-/tmp}/tower-introspect-postgres}"
data="$dir/data"
log="$dir/server.log"

die() { echo "postgres-cluster: $*" >&2; exit 1; }

pg_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then
    echo "$PG_BIN"
  elif command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
  else
    local candidate
    candidate=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n "$candidate" && -x "$candidate/pg_ctl" ]] || die "no initdb/pg_ctl found (install the postgresql package or set PG_BIN)"
    echo "$candidate"
  fi
}

# Runs a command as the cluster's owner (postgres when we are root).
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A TCP port nobody listens on (the server start retries with another one if it was taken since).
free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  die "no free port found"
}

url() {
  [[ -f "$dir/port" && -f "$dir/password" ]] || die "no cluster in $dir (run start first)"
  echo "postgres://postgres:$(cat "$dir/password")@127.0.0.1:$(cat "$dir/port")/postgres"
}

start() {
  local bin
  bin=$(pg_bin)
  if [[ -f "$data/postmaster.pid" ]] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    url
    return
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  chmod 0700 "$dir"
  # 32 hex characters of randomness; the file is readable by its owner only.
  (umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$dir/password")
  if [[ "$(id -u)" == 0 ]]; then
    chown -R postgres: "$dir"
  fi
  as_owner "$bin/initdb" -D "$data" -U postgres --pwfile="$dir/password" \
    --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  local port
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    # Loopback only; the Unix socket in the cluster directory; enough connections for the
    # parallel tests (each opens a small pool on its own database).
    if as_owner "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start -o \
      "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=300 -c shared_buffers=64MB" \
      >/dev/null; then
      (umask 077; echo "$port" > "$dir/port")
      url
      return
    fi
    echo "postgres-cluster: start on port $port failed (attempt $attempt)" >&2
  done
  cat "$log" >&2 || true
  die "the server did not start"
}

stop() {
  [[ -d "$data" ]] || return 0
  local bin
  bin=$(pg_bin)
  as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  *) die "usage: $0 start|stop|url" ;;
esac
