#!/usr/bin/env bash
# Checkpoint benchmark for durable state: how big a checkpoint of
# `bench/queries/state_groups.sql` gets, how long one takes, and how long a
# restart takes to read it back and restore it.
#
#   scripts/bench_checkpoint.sh [EVENTS] [SHARDS] [INTERVAL_MS]
#
# EVENTS Nexmark events (default 2,000,000: about 0.6 M groups, ~100 MB
# of state at the end); SHARDS default 2; INTERVAL_MS between one
# checkpoint's completion and the next request, default 500. Prints every
# checkpoint (state bytes, bytes written, request-to-manifest time), the
# run's summary, the state directory's size on disk, and the same for a
# second run on the same directory, which resumes from the last checkpoint
# (the time to read the state back and restore it is in its summary).
# GNU time reports the peak RSS.
LAMINAR_APT_PACKAGES="${LAMINAR_APT_PACKAGES:-} time"
source "$(dirname "$0")/env.sh"
cd "$LAMINAR_ROOT"
events="${1:-2000000}"
shards="${2:-2}"
interval="${3:-500}"
cargo build --release -p laminar --locked -q
work="$(mktemp -d /tmp/laminar-checkpoint-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
sed "s/{events}/$events/" bench/queries/state_groups.sql >"$work/q.sql"
run() {
    LAMINAR_LOG=laminar_reactor::checkpoint=debug /usr/bin/time -f "  wall %e s, peak RSS %M KB" \
        target/release/laminar run "$work/q.sql" --shards "$shards" --state-dir "$work/state" \
        --checkpoint-interval-ms "$interval" 2>&1 >/dev/null \
        | sed 's/\x1b\[[0-9;]*m//g' \
        | grep -E "^laminar run|resumed|checkpoints:|wall|checkpoint complete" \
        | sed -E 's/^.*checkpoint complete /  checkpoint: /'
}
echo "== $events events on $shards shards, a checkpoint requested $interval ms after the previous one completes"
run
echo "  state directory: $(du -sh "$work/state" | cut -f1)"
echo "== the same command again: resumes from the last checkpoint"
run
