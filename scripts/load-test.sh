#!/usr/bin/env bash
# Runs the loopback load test in release mode and prints its report.
# Usage: scripts/load-test.sh [--seconds N] [--connections N] [--tokens N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example load_test
exec target/release/examples/load_test "$@"
