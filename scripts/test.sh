#!/usr/bin/env bash
# The whole test suite: formatting, clippy with warnings as errors, and
# every test of every crate (unit, golden SQL files, property tests).
#
# Slow suites are opt-in through environment variables, documented in the
# README (none is slow yet).
source "$(dirname "$0")/env.sh"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --release --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --release --workspace --locked
