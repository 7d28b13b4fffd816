#!/usr/bin/env bash
# The whole test suite: formatting, clippy with warnings as errors, and
# every test of every crate (unit, golden SQL files, property tests).
#
# Slow suites are opt-in through environment variables, documented in the
# README: LAMINAR_STRESS=N adds N iterations of the multi-shard stress loop.
source "$(dirname "$0")/env.sh"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --release --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --release --workspace --locked

# Opt-in: the multi-shard stress loop (about 4 s per iteration when warm).
if [ -n "${LAMINAR_STRESS:-}" ]; then
    echo "== stress, $LAMINAR_STRESS iterations"
    "$(dirname "$0")/stress.sh" "$LAMINAR_STRESS"
fi
