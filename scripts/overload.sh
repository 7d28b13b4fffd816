#!/usr/bin/env bash
# Overload: pushes LINES CSV lines over 4 connections into `laminar serve`
# as fast as they go and reports what that costs. The pipeline: 2 shards,
# a tcp source, a 5 s TUMBLE COUNT/SUM per key and an unwindowed per-key
# changelog into file sinks, checkpoints every 200 ms, a 1 MiB inbox.
# With --hog a busy loop shares shard 1's core (another tenant, a kernel
# thread), the case where a slow shard must slow the source instead of
# filling memory.
#
#   scripts/overload.sh [--hog] [LINES]      (default 5000000)
#
# Prints the push time and lines/s, peak RSS, checkpoints completed during
# the push and the longest one seen, held-back and stall seconds, how
# often /health said a shard's watchdog had stopped, and the bounds
# configured. Data and state go to a temporary directory.
LAMINAR_APT_PACKAGES="${LAMINAR_APT_PACKAGES:-} curl util-linux"
source "$(dirname "$0")/env.sh"

hog=""
if [ "${1:-}" = "--hog" ]; then
    hog=1
    shift
fi
lines="${1:-5000000}"
cargo build --release -q -p laminar
bin="$CARGO_TARGET_DIR/release/laminar"
work="$(mktemp -d /tmp/laminar-overload.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

# Four parts, each a quarter of the lines, up to 1.5 s out of order.
for c in 0 1 2 3; do
    awk -v c="$c" -v n="$lines" 'BEGIN {
        srand(1 + c); base = 1704067200000;
        for (i = c; i < n; i += 4) {
            printf "%d,%d,%d\n", int(rand() * 10000), int(rand() * 1000), base + int(i / 2) + int(rand() * 1500);
        }
    }' >"part$c.csv" &
done
wait

port=$((20000 + RANDOM % 20000))
admin=$((port + 1))
cat >pipeline.sql <<EOF
CREATE SOURCE bid (auction BIGINT NOT NULL, price BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'tcp', port = '$port', format = 'csv');
CREATE STREAM totals AS SELECT auction, COUNT(*) AS bids, SUM(price) AS total, window_start, window_end
FROM TUMBLE(bid, ts, INTERVAL '5' SECOND) GROUP BY auction, window_start, window_end;
CREATE STREAM per_key AS SELECT auction, COUNT(*) AS n, SUM(price) AS s FROM bid GROUP BY auction;
CREATE SINK totals_file FROM totals WITH (connector = 'file', path = 'out/totals.csv', format = 'csv');
CREATE SINK per_key_file FROM per_key WITH (connector = 'file', path = 'out/per_key.csv', format = 'csv');
EOF
cat >laminar.toml <<EOF
[pipeline]
files = ['pipeline.sql']
[state]
dir = 'state'
checkpoint_interval_ms = 200
[shards]
count = 2
[listen]
admin = '127.0.0.1:$admin'
sql = '127.0.0.1:0'
[limits]
inbox_bytes_max = 1048576
EOF

metric() { curl -s "127.0.0.1:$admin/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }

LAMINAR_LOG=warn "$bin" serve --config laminar.toml 2>serve.log &
server=$!
until grep -q '^ready' serve.log 2>/dev/null; do
    kill -0 "$server" 2>/dev/null || { cat serve.log >&2; exit 1; }
    sleep 0.05
done
hog_pid=""
if [ -n "$hog" ]; then
    cpu="$(taskset -pc "$server" | awk -F': ' '{ print $2 }' | tr ',' '\n' | sed -n 2p | cut -d- -f1)"
    taskset -c "${cpu:-1}" sh -c 'while :; do :; done' &
    hog_pid=$!
fi
checkpoints_before="$(metric laminar_checkpoints_total)"
# Peak RSS, the longest checkpoint and /health (every shard's watchdog
# ticked in the last 50 ms), sampled every 100 ms.
(
    peak=0 longest=0 samples=0 unhealthy=0
    while kill -0 "$server" 2>/dev/null; do
        rss="$(awk '/VmRSS/ { print $2 }' "/proc/$server/status" 2>/dev/null || echo 0)"
        [ "${rss:-0}" -gt "$peak" ] && peak="$rss"
        d="$(metric laminar_checkpoint_duration_seconds)"
        longest="$(awk -v a="$longest" -v b="${d:-0}" 'BEGIN { print (b > a) ? b : a }')"
        code="$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$admin/health")"
        samples=$((samples + 1))
        [ "$code" = 200 ] || unhealthy=$((unhealthy + 1))
        echo "$peak $longest $samples $unhealthy" >sample
        sleep 0.1
    done
) &
start="$(date +%s.%N)"
pids=()
for c in 0 1 2 3; do
    "$bin" ingest --addr "127.0.0.1:$port" "part$c.csv" >"ingest$c.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || { cat "ingest"*.log >&2; exit 1; }; done
end="$(date +%s.%N)"
rows="$(metric 'laminar_source_rows_total{source="bid"}')"
label="alone on its cores"
[ -z "$hog" ] || label="with a busy loop on the core of shard 1"
checkpoints="$(awk -v a="$(metric laminar_checkpoints_total)" -v b="$checkpoints_before" 'BEGIN { print a - b }')"
held_back="$(metric 'laminar_shard_held_back_seconds_total{shard="0"}')"
stall="$(metric 'laminar_shard_stall_seconds_total{shard="1"}')"
sleep 0.2
read -r peak longest samples unhealthy <sample
[ -z "$hog_pid" ] || kill "$hog_pid"
kill -TERM "$server"
wait "$server"
awk -v n="$rows" -v s="$start" -v e="$end" -v peak="$peak" -v longest="$longest" -v cp="$checkpoints" \
    -v hb="$held_back" -v st="$stall" -v hog="$label" -v samples="$samples" -v unhealthy="$unhealthy" 'BEGIN {
    t = e - s;
    printf "overload %s: %d lines acknowledged in %.2f s (%.2f M lines/s)\n", hog, n, t, n / t / 1e6;
    printf "  peak RSS %.0f MiB; %d checkpoints during the push (one per %.2f s), the longest %.3f s\n", peak / 1024, cp, t / (cp > 0 ? cp : 1), longest;
    printf "  shard 0 held back %.2f s; shard 1 stalled %.2f s; /health not ok in %d of %d samples\n", hb, st, unhealthy, samples;
    printf "  bounds: inbox 1 MiB per source, mesh 32 MiB and held rows 32 MiB per shard (defaults)\n";
}'
