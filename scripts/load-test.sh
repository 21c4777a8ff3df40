#!/usr/bin/env bash
# Saturating load test of BearerAuthLayer on loopback (see BENCHMARKS.md for how to read it).
#
# The server (examples/load_server.rs, one tokio worker) is pinned to core 0; wrk (1 thread,
# keep-alive connections, requests rotating over the valid tokens) and the mock authorization
# server are pinned to core 1. Six configurations, measured in interleaved rounds with the order
# rotated: no auth (the ceiling), tower-http's static bearer check (the floor), BearerAuthLayer
# with a warm cache, BearerAuthLayer without a cache (one introspection per request), and for
# JWT access tokens (ES256): BearerAuthLayer with a warm cache, and without one (the signature
# verified on every request, as uncached JWT middleware does), and for a DPoP-bound token:
# BearerAuthLayer with a warm cache and DPoP required, every request with its own fresh ES256
# proof (pre-signed by the server before the rounds, each sent once).
# Per configuration: req/s, p50/p99, the server's CPU time per request (from /proc/<pid>/stat),
# whether the server's core was saturated, the median of per-round throughput ratios to the
# ceiling, and the server CPU added per request. Then (unless --no-extras) the memory and cold-path
# measurements of examples/load_test.rs.
#
# Usage: scripts/load-test.sh [--rounds N] [--seconds N] [--connections N] [--tokens N]
#                             [--no-extras] [--no-build] [--metrics] [--perf CONFIG [--perf-seconds N]]
#   --metrics       the server records feature `metrics` into a Prometheus recorder (as the demo's
#                   /metrics does); compare its warm "added server CPU" with a run without it.
#   --perf CONFIG   after the rounds, profile the server (perf record -e cpu-clock -g) under wrk
#                   for one configuration (none, static, warm, nocache, jwt, jwt_nocache or dpop) and print
#                   its top symbols.
#
# Needs: a machine with at least 2 cores, wrk (Debian/Ubuntu: `apt-get install wrk`), taskset
# (util-linux), curl, and perf for --perf (`apt-get install linux-perf`). It installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=5
seconds=5
connections=64
tokens=1000
extras=1
build=1
perf_config=""
perf_seconds=10
metrics_flag=""
port=18000
as_port=18100
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --tokens) tokens=$2; shift 2 ;;
        --no-extras) extras=0; shift ;;
        --no-build) build=0; shift ;;
        --metrics) metrics_flag="--metrics"; shift ;;
        --perf) perf_config=$2; shift 2 ;;
        --perf-seconds) perf_seconds=$2; shift 2 ;;
        *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
    esac
done

for tool in wrk taskset curl; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool is missing (Debian/Ubuntu: apt-get install wrk util-linux curl)" >&2
        exit 1
    fi
done
if [ -n "$perf_config" ] && ! command -v perf >/dev/null; then
    echo "error: perf is missing (Debian: apt-get install linux-perf)" >&2
    exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "error: needs 2 cores (server on core 0, generator and mock authorization server on core 1)" >&2
    exit 1
fi
server_core=0
generator_core=1

if [ "$build" = 1 ]; then
    cargo build --release --example load_server --example load_test
fi
bin="${CARGO_TARGET_DIR:-target}/release/examples"
lua="scripts/bench/rotate-tokens.lua"
jwt_lua="scripts/bench/rotate-jwts.lua"
hz=$(getconf CLK_TCK)
work=$(mktemp -d)

taskset -c "$generator_core" "$bin/load_server" mock-as --port "$as_port" --tokens "$tokens" \
    >"$work/mock.log" 2>&1 &
mock=$!
# Proofs for every DPoP request of the run: at most ~15,000/s (a proof check costs ~70 µs) over
# the rounds, the warm-up and the profile, plus the requests in flight when each run stops.
# The proofs are signed at the server's start and fresh for ±5 min: keep the whole run (about
# 7 × rounds × seconds) within that.
profile_seconds=0
[ -n "$perf_config" ] && profile_seconds=$((perf_seconds + 2))
dpop_count=$(((rounds * seconds + profile_seconds + 2) * 15000))
if [ $((7 * rounds * seconds)) -gt 240 ]; then
    echo "warning: a run this long outlives the DPoP proofs' 5-minute window (dpop rounds will fail)" >&2
fi
taskset -c "$server_core" "$bin/load_server" serve \
    --as "http://127.0.0.1:$as_port/introspect" --port "$port" --tokens "$tokens" $metrics_flag \
    --dpop-proofs "$work/dpop.txt" --dpop-count "$dpop_count" \
    >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" "$mock" 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$((port + 6))/stats" >/dev/null &&
        curl -fs "http://127.0.0.1:$as_port/calls" >/dev/null && break
    sleep 0.1
done

names=(none static warm nocache jwt jwt_nocache dpop)
labels=("no auth (ceiling)" "tower-http static bearer (floor)" "BearerAuthLayer, warm cache"
    "BearerAuthLayer, no cache" "BearerAuthLayer, JWT, warm cache"
    "BearerAuthLayer, JWT, signature checked on every request"
    "BearerAuthLayer, warm cache, DPoP proof (ES256) checked on every request")
ports=("$port" "$((port + 1))" "$((port + 2))" "$((port + 3))" "$((port + 4))" "$((port + 5))"
    "$((port + 7))")
# The DPoP configuration sends each pre-signed proof once: the next run starts after the proofs
# the previous ones used (completed requests, plus those in flight when wrk stopped).
dpop_offset=0
configs=${#names[@]}
# The JWT configurations send the server's own signed tokens, read from a file.
curl -fs "http://127.0.0.1:$((port + 6))/jwts" >"$work/jwts.txt"
lua_args=("$tokens" "$tokens fixed" "$tokens" "$tokens" "$work/jwts.txt" "$work/jwts.txt"
    "$work/dpop.txt")
scripts=("$lua" "$lua" "$lua" "$lua" "$jwt_lua" "$jwt_lua" "scripts/bench/dpop-requests.lua")

# CPU ticks (utime + stime) of a process; the command name is in parentheses, skip past it.
process_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
# Ticks every core spent busy (user, nice, system, irq, softirq, steal).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# CPU ticks of this shell's finished children (wrk included once it ended), from the output of
# `times`, which must run in this shell itself, not in a command substitution's subshell.
children_ticks() { awk -v hz="$hz" 'NR == 2 {
    n = split($0, t, " "); s = 0
    for (i = 1; i <= n; i++) { split(t[i], ms, "m"); s += ms[1] * 60 + ms[2] }
    printf "%d\n", s * hz + 0.5 }' "$1"; }
mock_calls() { curl -fs "http://127.0.0.1:$as_port/calls"; }

run_wrk() { # config-index duration -> wrk output
    local i=$1 duration=$2 extra=""
    [ "${names[$i]}" = dpop ] && extra=$dpop_offset
    # shellcheck disable=SC2086
    taskset -c "$generator_core" wrk -t1 -c"$connections" -d"${duration}s" --latency \
        -s "${scripts[$i]}" "http://127.0.0.1:${ports[$i]}/" -- ${lua_args[$i]} $extra
}
# After a DPoP run (its wrk output on stdin): skip the proofs it used.
advance_dpop() {
    local used
    used=$(awk '/ requests in / { print $1 }')
    dpop_offset=$((dpop_offset + used + connections))
}

echo "# saturating load test"
echo "command: scripts/load-test.sh --rounds $rounds --seconds $seconds --connections $connections --tokens $tokens $metrics_flag"
echo "wrk: taskset -c $generator_core wrk -t1 -c$connections -d${seconds}s --latency -s $lua http://127.0.0.1:<port>/ -- $tokens"
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr)"
echo "server: load_server serve (one tokio worker) pinned to core $server_core, pid $server;" \
    "mock authorization server and wrk pinned to core $generator_core"
echo "loadavg at start: $(cat /proc/loadavg)"

# Warm the cache: every token once through the cached configuration.
run_wrk 2 2 >/dev/null
stats=$(curl -fs "http://127.0.0.1:$((port + 6))/stats")
echo "cache warmed: $stats"
warm_calls=$(sed 's/.*introspection_calls=\([0-9]*\).*/\1/' <<<"$stats")
if [ "$warm_calls" != "$tokens" ]; then
    echo "error: warming made $warm_calls introspection calls, expected $tokens" >&2
    exit 1
fi
# And the JWT cache: every JWT once.
run_wrk 4 2 >/dev/null
jwt_stats=$(curl -fs "http://127.0.0.1:$((port + 6))/jwt-stats")
echo "JWT cache warmed: $jwt_stats"
jwt_warm_misses=$(sed 's/.*misses=\([0-9]*\).*/\1/' <<<"$jwt_stats")
if [ "$jwt_warm_misses" != "$tokens" ]; then
    echo "error: warming made $jwt_warm_misses JWT verifications, expected $tokens" >&2
    exit 1
fi
# One unmeasured second per configuration: connections, allocator and caches settle.
for i in 0 1 3 5; do run_wrk "$i" 1 >/dev/null; done
advance_dpop < <(run_wrk 6 1)

results="$work/results.tsv"
echo
echo "round config requests seconds p50_us p99_us non2xx server_busy other_cores introspections"
for round in $(seq "$rounds"); do
    for k in $(seq 0 $((configs - 1))); do
        i=$(((round - 1 + k) % configs))
        calls0=$(mock_calls)
        times >"$work/times0"
        s0=$(process_ticks "$server"); m0=$(process_ticks "$mock"); b0=$(busy_ticks)
        out=$(run_wrk "$i" "$seconds")
        s1=$(process_ticks "$server"); m1=$(process_ticks "$mock"); b1=$(busy_ticks)
        [ "${names[$i]}" = dpop ] && advance_dpop <<<"$out"
        times >"$work/times1"
        calls1=$(mock_calls)
        c0=$(children_ticks "$work/times0"); c1=$(children_ticks "$work/times1")
        # requests, duration (s), p50 and p99 in µs, non-2xx responses and socket errors.
        read -r requests duration p50 p99 errors < <(awk '
            function us(v) {
                if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000
                if (v ~ /s$/) return v * 1000000; return v
            }
            / requests in / { r = $1; d = $4; sub(/s,?$/, "", d) }
            $1 == "50%" { p50 = us($2) }
            $1 == "99%" { p99 = us($2) }
            /Non-2xx/ { e += $NF }
            /Socket errors/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
            END { printf "%d %s %.0f %.0f %d\n", r, d, p50, p99, e }' <<<"$out")
        server_ticks=$((s1 - s0)); mock_ticks=$((m1 - m0)); wrk_ticks=$((c1 - c0))
        other_ticks=$((b1 - b0 - server_ticks - mock_ticks - wrk_ticks))
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$i" "$requests" "$duration" \
            "$p50" "$p99" "$errors" "$server_ticks" "$other_ticks" "$((calls1 - calls0))" >>"$results"
        awk -v r="$round" -v c="${names[$i]}" -v n="$requests" -v d="$duration" -v p50="$p50" \
            -v p99="$p99" -v e="$errors" -v s="$server_ticks" -v o="$other_ticks" \
            -v calls="$((calls1 - calls0))" -v hz="$hz" 'BEGIN {
            printf "%s %s %d %.2f %d %d %d %.2f %.2f %d\n", r, c, n, d, p50, p99, e,
                s / hz / d, o / hz / d, calls }'
    done
done
echo "loadavg at end: $(cat /proc/loadavg)"

echo
echo "| configuration | requests | errors | req/s | p50 µs | p99 µs | server CPU µs/request | server core busy (min of rounds) | median ratio to ceiling | added server CPU µs/request | introspections/request |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
awk -F'\t' -v hz="$hz" -v rounds="$rounds" \
    -v labels="$(IFS='|'; echo "${labels[*]}")" -v configs="$configs" '
    function median(a, n,    i, j, t) {
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        r = $1; c = $2
        req[c] += $3; dur[c] += $4; err[c] += $7; ticks[c] += $8; calls[c] += $10
        rps[r, c] = $3 / $4; busy = $8 / hz / $4
        if (!(c in minbusy) || busy < minbusy[c]) minbusy[c] = busy
        n[c]++; p50[c, n[c]] = $5; p99[c, n[c]] = $6
        other = $9 / hz / $4; if (other > maxother) maxother = other
    }
    END {
        split(labels, label, "|")
        ceiling_cpu = ticks[0] * 1000000 / hz / req[0]
        for (c = 0; c < configs; c++) {
            delete a; for (k = 1; k <= n[c]; k++) a[k] = rps[k, c] / rps[k, 0]; ratio = median(a, n[c])
            delete a; for (k = 1; k <= n[c]; k++) a[k] = p50[c, k]; m50 = median(a, n[c])
            delete a; for (k = 1; k <= n[c]; k++) a[k] = p99[c, k]; m99 = median(a, n[c])
            cpu = ticks[c] * 1000000 / hz / req[c]
            printf "| %s | %d | %d | %.0f | %d | %d | %.2f | %.0f%%%s | %.3f | %+.2f | %.3f |\n",
                label[c + 1], req[c], err[c], req[c] / dur[c], m50, m99, cpu, minbusy[c] * 100,
                minbusy[c] < 0.95 ? " NOT saturated: the generator side is the bottleneck" : "",
                ratio, cpu - ceiling_cpu, calls[c] / req[c]
            if (c == 2) { warm_ratio = ratio; warm_added = cpu - ceiling_cpu; warm_p99 = m99 }
            if (c == 4) { jwt_added = cpu - ceiling_cpu; jwt_rps = req[c] / dur[c]; jwt_cpu = cpu }
            if (c == 5) { every_rps = req[c] / dur[c]; every_cpu = cpu }
            if (c == 6) { dpop_cpu = cpu; dpop_added = cpu - ceiling_cpu }
            if (c == 0) ceiling_p99 = m99
        }
        printf "\np50/p99: medians over the %d rounds. Server CPU: utime+stime of the server process over the rounds / requests.\n", rounds
        printf "Other processes (total busy CPU minus server, mock AS and wrk): at most %.2f cores during any run.\n", maxother
        printf "\nwarm cache: median ratio %.3f (target >= 0.90), added server CPU %.2f µs/request (target <= 1.0), p99 %d µs vs ceiling %d µs (%+.0f%%, target <= +10%%)\n",
            warm_ratio, warm_added, warm_p99, ceiling_p99, (warm_p99 / ceiling_p99 - 1) * 100
        printf "JWT warm cache: added server CPU %.2f µs/request (introspected warm: %.2f; target: within 0.1)\n", jwt_added, warm_added
        printf "JWT warm cache vs signature on every request: %.2fx the throughput (target >= 3), %.2f vs %.2f µs server CPU/request\n",
            jwt_rps / every_rps, jwt_cpu, every_cpu
        printf "DPoP (warm token, fresh ES256 proof per request): %.2f µs server CPU/request, added %.2f (bearer warm: %+.2f); the proof costs %.2f (target <= 60)\n",
            dpop_cpu, dpop_added, warm_added, dpop_added - warm_added
    }' "$results"
stats=$(curl -fs "http://127.0.0.1:$((port + 6))/stats")
echo "cache after the rounds: $stats (warm-up made $warm_calls introspection calls; any more were made under load)"
if [ -n "$metrics_flag" ]; then
    recorded=$(curl -fs "http://127.0.0.1:$((port + 6))/metrics" |
        awk '/^tower_introspect_cache_lookups_total\{result="hit"\}/ { print $2 }')
    echo "metrics on: the Prometheus recorder counted ${recorded:-no} cache hits"
    if [ -z "$recorded" ]; then
        echo "error: --metrics, but the recorder counted nothing" >&2
        exit 1
    fi
fi

if [ -n "$perf_config" ]; then
    for i in $(seq 0 $((configs - 1))); do [ "${names[$i]}" = "$perf_config" ] && break; done
    echo
    echo "# profile of the server under wrk, configuration $perf_config"
    echo "perf record -e cpu-clock -g -p $server -- sleep $perf_seconds"
    run_wrk "$i" "$((perf_seconds + 2))" >/dev/null &
    load=$!
    sleep 1
    perf record -q -e cpu-clock -g -o "$work/perf.data" -p "$server" -- sleep "$perf_seconds" 2>/dev/null
    wait "$load"
    perf report -i "$work/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null |
        grep -v '^#' | grep -v '^$' | sed 's/  *-  *-  *$//; s/ *$//' >"$work/perf.txt"
    echo "top symbols (% of the server's samples):"
    head -25 "$work/perf.txt" | cut -c1-140
    echo "grouped:"
    awk '{ p = $1; sub(/%/, "", p); line = $0
        if (line ~ /moka::/) g = "moka (cache lookup and maintenance)"
        else if (line ~ /tower_introspect::/) g = "tower_introspect (the layer)"
        else if (line ~ /sha2::/) g = "sha2 (token hash)"
        else if (line ~ /malloc|_int_free|_int_malloc|cfree|free$|unlink_chunk|realloc/) g = "malloc/free"
        else if (line ~ /\[k\]/) g = "kernel (TCP, syscalls)"
        else if (line ~ /hyper::|http::|axum::|tower::|tokio::/) g = "hyper, http, axum, tower, tokio"
        else g = "other"
        sum[g] += p }
        END { for (g in sum) printf "  %6.2f%%  %s\n", sum[g], g }' "$work/perf.txt" | sort -rn
fi

if [ "$extras" = 1 ]; then
    echo
    taskset -c "$server_core,$generator_core" "$bin/load_test"
fi
