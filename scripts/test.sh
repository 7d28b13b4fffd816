#!/usr/bin/env bash
# The whole test suite: formatting, clippy with warnings as errors, and
# every test of every crate (unit, golden SQL files, property tests).
#
# Slow suites are opt-in through environment variables, documented in the
# README (Tests): LAMINAR_STRESS=N adds N iterations of the multi-shard stress loop;
# LAMINAR_FUZZ_SECONDS=N fuzzes each decoder N seconds instead of 15;
# LAMINAR_STATIC=1 builds and checks the statically linked binary.
#
# bin/tests/host.rs checks the systemd unit with systemd-analyze (package
# systemd), the stress loop reads cargo's JSON with python3, and
# bin/tests/console.rs loads the admin console in headless Chromium;
# bin/tests/pg.rs talks to the PostgreSQL face with psql
# (postgresql-client) and psycopg (python3-psycopg).
LAMINAR_APT_PACKAGES="${LAMINAR_APT_PACKAGES:-} systemd python3 chromium postgresql-client python3-psycopg"
source "$(dirname "$0")/env.sh"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --release --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --release --workspace --locked

echo "== fuzz, ${LAMINAR_FUZZ_SECONDS:-15} s per target"
"$(dirname "$0")/fuzz.sh" --scratch "${LAMINAR_FUZZ_SECONDS:-15}"

# Opt-in: the statically linked binary (its first build compiles RocksDB
# again, about 22 minutes on 2 cores).
if [ -n "${LAMINAR_STATIC:-}" ]; then
    echo "== static binary"
    cargo test --release --locked -p laminar --test host -- --ignored the_static_binary_is_static_and_serves
fi

# Opt-in: the multi-shard stress loop (about 4 s per iteration when warm).
if [ -n "${LAMINAR_STRESS:-}" ]; then
    echo "== stress, $LAMINAR_STRESS iterations"
    "$(dirname "$0")/stress.sh" "$LAMINAR_STRESS"
fi
