#!/usr/bin/env bash
# Runs every cargo-fuzz target briefly (default 30 s each), starting from the checked-in corpus.
# A smoke test for CI: it proves the targets build and that no known input or quick mutation
# breaks an invariant. The long runs (10 million executions each) are described in FUZZING.md.
#
#   scripts/fuzz-smoke.sh            # 30 s per target
#   FUZZ_SECONDS=120 scripts/fuzz-smoke.sh
#
# cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 allows them on stable.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

targets=$(cargo fuzz list)
# No sanitizer: the library forbids unsafe code, and without ASan the run is about twice as fast.
# Debug assertions on, so integer overflows panic.
cargo fuzz build --sanitizer none --debug-assertions
for target in $targets; do
  echo "--- $target (${seconds}s)"
  # A scratch copy of the corpus, so new inputs found here do not dirty the checkout.
  scratch=$(mktemp -d)
  cp -r "corpus/$target/." "$scratch/" 2>/dev/null || true
  cargo fuzz run --sanitizer none --debug-assertions "$target" "$scratch" -- \
    -max_total_time="$seconds" -print_final_stats=1
  rm -rf "$scratch"
done
