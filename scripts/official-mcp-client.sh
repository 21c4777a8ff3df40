#!/usr/bin/env bash
# Proves that the official MCP TypeScript SDK client (@modelcontextprotocol/sdk from the npm
# registry, pinned in scripts/official-mcp-client/package-lock.json) completes the whole OAuth
# flow against the demo MCP server and the reference provider, with no special-casing:
# 401 challenge -> RFC 9728 metadata -> RFC 8414 metadata -> dynamic registration (RFC 7591) ->
# authorize with PKCE -> token -> tools, for the demo users bob, alice and admin; and once more
# for alice with no registration at all: the SDK presents a Client ID Metadata Document URL as its
# client_id (`clientMetadataUrl`). check.mjs serves that document over https on loopback with a
# throwaway certificate made here (openssl, in the temporary directory), and the provider runs
# with --cimd-allow-loopback and that certificate as --cimd-ca-file.
#
#   scripts/official-mcp-client.sh            # build, start both servers, npm ci, run the check
#   VERBOSE=1 scripts/official-mcp-client.sh  # print the HTTP trace of every run
#
# Needs cargo, node (>= 20), npm and openssl; the npm registry must be reachable for `npm ci`.
# Honours CARGO_TARGET_DIR (default: target/). Both servers listen on free loopback ports and are
# always stopped on exit. Exit status is non-zero on any failure.
set -euo pipefail

started=$(date +%s)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-target}
check_dir=scripts/official-mcp-client

# Settings inherited from the caller's shell must not reconfigure the servers.
# Every OAUTH_* and MCP_* variable, so settings added later are covered too.
while read -r name; do unset "$name"; done < <(compgen -e | grep -E '^(OAUTH|MCP)_' || true)

export NO_COLOR=1

log() { printf '==> %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

for tool in cargo node npm openssl timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node >= 20 is required (found $(node --version))"

work=$(mktemp -d "${TMPDIR:-/tmp}/official-mcp-client.XXXXXX")
pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        # Give each server a moment for its graceful shutdown, then make sure it is gone.
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ]; then
        for f in provider mcp_server; do
            if [ -s "$work/$f.log" ]; then
                printf '\n--- last lines of the %s log ---\n' "$f" >&2
                tail -n 25 "$work/$f.log" >&2
            fi
        done
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building oauth-provider and the mcp_server example (CARGO_TARGET_DIR=$target_dir)"
timeout 1800 cargo build --quiet -p oauth-provider --bin oauth-provider
timeout 1800 cargo build --quiet -p tower-introspect --example mcp_server
provider_bin=$target_dir/debug/oauth-provider
mcp_bin=$target_dir/debug/examples/mcp_server
[ -x "$provider_bin" ] || die "$provider_bin was not built"
[ -x "$mcp_bin" ] || die "$mcp_bin was not built"

log "installing the official SDK (npm ci in $check_dir)"
# A registry hiccup should not fail the check: three attempts.
for attempt in 1 2 3; do
    if timeout 300 npm ci --prefix "$check_dir" --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1; then
        break
    fi
    [ "$attempt" -lt 3 ] || { cat "$work/npm.log" >&2; die "npm ci failed"; }
    log "npm ci failed (attempt $attempt), retrying"
    sleep $((attempt * 5))
done

run_started=$(date +%s)

# The client metadata document's https certificate: self-signed, for the loopback names only,
# valid for a day, never reused (it lives and dies with $work). CA:FALSE, since the provider's TLS
# stack refuses a CA certificate as a server's own.
log "making a throwaway certificate for the client metadata document (127.0.0.1, localhost)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -keyout "$work/cimd-key.pem" -out "$work/cimd-cert.pem" -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature" \
    -addext "extendedKeyUsage=serverAuth" >"$work/openssl.log" 2>&1 \
    || { cat "$work/openssl.log" >&2; die "openssl could not make the certificate"; }

# Waits (at most 30 s) for a line matching $2 in file $1 while process $3 lives; prints the line.
wait_for_line() {
    local file=$1 pattern=$2 pid=$3 line
    for _ in $(seq 1 300); do
        line=$(grep -m1 -E "$pattern" "$file" 2>/dev/null || true)
        if [ -n "$line" ]; then
            printf '%s\n' "$line"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# The provider issues tokens only for resources it knows, and the MCP server needs the provider's
# issuer to start: pick the MCP server's port first (a free port the kernel just handed out).
mcp_port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')
[[ $mcp_port =~ ^[0-9]+$ ]] || die "could not find a free port for the MCP server"
mcp_resource=http://127.0.0.1:$mcp_port/mcp

# Each server also gets a hard time limit, in case this script itself is killed without its trap.
log "starting oauth-provider --demo --storage memory --resource $mcp_resource --cimd-allow-loopback on a free port"
timeout --kill-after=5 300 "$provider_bin" --demo --storage memory --bind 127.0.0.1:0 \
    --resource "$mcp_resource" \
    --cimd-allow-loopback --cimd-ca-file "$work/cimd-cert.pem" \
    >"$work/provider.out" 2>"$work/provider.log" &
pids+=($!)
line=$(wait_for_line "$work/provider.out" '^oauth-provider listening on http://' "${pids[0]}") \
    || die "oauth-provider did not start"
issuer=$(printf '%s\n' "$line" | sed -E 's/.*\(issuer ([^)]+)\).*/\1/')
[[ $issuer == http://* ]] || die "could not read the issuer from: $line"
log "$line"

log "starting the mcp_server example on port $mcp_port"
timeout --kill-after=5 300 "$mcp_bin" --issuer "$issuer" --bind "127.0.0.1:$mcp_port" \
    >"$work/mcp_server.log" 2>&1 &
pids+=($!)
line=$(wait_for_line "$work/mcp_server.log" '^MCP server at http://' "${pids[1]}") \
    || die "the mcp_server example did not start"
mcp_url=$(printf '%s\n' "$line" | sed -E 's/^MCP server at ([^ ]+).*/\1/')
log "$line"

log "running the official MCP client check"
# In the background and waited for, so that a signal to this script is handled at once.
(cd "$check_dir" && MCP_URL=$mcp_url OAUTH_ISSUER=$issuer \
    CIMD_CERT_FILE=$work/cimd-cert.pem CIMD_KEY_FILE=$work/cimd-key.pem \
    exec timeout --kill-after=5 120 node check.mjs) &
pids+=($!)
status=0
wait "${pids[2]}" || status=$?

now=$(date +%s)
echo
if [ "$status" -eq 0 ]; then
    log "official MCP client check PASSED in $((now - run_started)) s after the build ($((now - started)) s in all)"
else
    log "official MCP client check FAILED (exit $status) after $((now - run_started)) s"
fi
exit "$status"
