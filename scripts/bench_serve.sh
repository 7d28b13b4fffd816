#!/usr/bin/env bash
# Measures `laminar serve` end to end on loopback:
#   scripts/bench_serve.sh [LINES] [CONNECTIONS] [SHARDS]   (default 2000000 4 2)
#
# - ingest throughput: LINES bid lines (about 30 bytes each) sent by
#   CONNECTIONS `laminar ingest` clients at once into a tcp source feeding
#   a 10 s tumbling count and sum per auction, from the first byte to the
#   last acknowledgement (every line durable in the WAL);
# - acknowledgement latency: 300 one-line connections in a row (connect,
#   send, half-close, wait for `OK`), measured by a small Python client so
#   that no process start-up is counted;
# - the server's WAL group commits and checkpoints (from /metrics), its
#   peak RSS, and how long a SIGTERM drain takes.
LAMINAR_APT_PACKAGES="python3"
source "$(dirname "$0")/env.sh"

lines="${1:-2000000}"
connections="${2:-4}"
shards="${3:-2}"
cargo build --release --locked -p laminar >&2
bin="$LAMINAR_ROOT/target/release/laminar"
work="$(mktemp -d /tmp/laminar-bench-serve.XXXXXX)"
trap 'kill -9 "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

cat > pipeline.sql <<'SQL'
CREATE SOURCE bid (auction BIGINT NOT NULL, price BIGINT, ts BIGINT,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'tcp', port = '0', format = 'csv');
CREATE STREAM totals AS
SELECT auction, COUNT(*) AS bids, SUM(price) AS total, window_start
FROM TUMBLE(bid, ts, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end;
CREATE SINK totals_out FROM totals WITH (connector = 'file', path = 'out/totals.csv', format = 'csv');
SQL
cat > laminar.toml <<TOML
[pipeline]
files = ["pipeline.sql"]
[state]
dir = "state"
checkpoint_interval_ms = 1000
[shards]
count = $shards
[listen]
admin = "127.0.0.1:0"
sql = "127.0.0.1:0"
TOML

# Input: one file per connection, lines in time order, each file a
# stride of the stream (so every connection's watermark moves alike).
per=$(( lines / connections ))
for c in $(seq 0 $(( connections - 1 ))); do
    awk -v c="$c" -v n="$per" -v k="$connections" 'BEGIN {
        srand(7 + c);
        for (i = 0; i < n; i++) {
            id = i * k + c;
            printf "%d,%d,%d\n", int(rand() * 10000), int(rand() * 1000), 1704067200000 + id;
        }
    }' > "in-$c.csv"
done
bytes=$(cat in-*.csv | wc -c)

"$bin" serve --config laminar.toml 2> serve.log &
pid=$!
for _ in $(seq 1 600); do grep -q '^ready' serve.log && break; sleep 0.05; done
grep -q '^ready' serve.log || { cat serve.log >&2; echo "error: serve did not get ready" >&2; exit 1; }
source_addr=$(sed -n 's/^listening: source bid tcp //p' serve.log)
admin_addr=$(sed -n 's/^listening: admin http //p' serve.log)

start=$(date +%s.%N)
ingest_pids=()
for c in $(seq 0 $(( connections - 1 ))); do
    "$bin" ingest --addr "$source_addr" "in-$c.csv" 2>> ingest.log &
    ingest_pids+=("$!")
done
for p in "${ingest_pids[@]}"; do
    wait "$p" || { cat ingest.log >&2; echo "error: an ingest client was not acknowledged" >&2; exit 1; }
done
end=$(date +%s.%N)

latency=$(python3 - "$source_addr" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
samples = []
for i in range(300):
    t = time.perf_counter()
    s = socket.create_connection((host, int(port)))
    s.sendall(b"1,1,%d\n" % (1704067200000 + 10**9 + i))
    s.shutdown(socket.SHUT_WR)
    answer = s.recv(100)
    samples.append(time.perf_counter() - t)
    s.close()
    assert answer.startswith(b"OK "), answer
samples.sort()
q = lambda p: samples[min(len(samples) - 1, int(p * len(samples)))] * 1e3
print(f"p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, max {samples[-1]*1e3:.2f} ms")
PY
)

metrics=$(curl -s "http://$admin_addr/metrics" 2>/dev/null || python3 -c "import urllib.request,sys;print(urllib.request.urlopen('http://$admin_addr/metrics').read().decode())")
sum_metric() { echo "$metrics" | awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%.6f", s}'; }
syncs=$(sum_metric laminar_wal_fsync_total)
sync_s=$(sum_metric laminar_wal_fsync_seconds_total)
sync_max=$(echo "$metrics" | awk '$1 ~ /^laminar_wal_fsync_seconds_max/ {if ($2 > m) m = $2} END {printf "%.2f", m * 1e3}')
ckpt=$(echo "$metrics" | awk '$1 == "laminar_checkpoints_total" {print $2}')
ckpt_ms=$(echo "$metrics" | awk '$1 == "laminar_checkpoint_duration_seconds" {printf "%.1f", $2 * 1e3}')
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")

stop_start=$(date +%s.%N)
kill -TERM "$pid"
wait "$pid" || true
stop_end=$(date +%s.%N)

python3 - "$lines" "$bytes" "$connections" "$shards" "$start" "$end" "$syncs" "$sync_s" "$sync_max" "$ckpt" "$ckpt_ms" "$rss_kb" "$stop_start" "$stop_end" "$latency" <<'PY'
import sys
(lines, nbytes, conns, shards, start, end, syncs, sync_s, sync_max, ckpt, ckpt_ms, rss_kb, s0, s1, latency) = sys.argv[1:]
secs = float(end) - float(start)
syncs = float(syncs)
print(f"ingest: {int(lines):,} lines ({int(nbytes)/1e6:.0f} MB) over {conns} connections, {shards} shards: "
      f"{secs:.2f} s to the last acknowledgement, {int(lines)/secs/1e6:.2f} M lines/s, {int(nbytes)/secs/1e6:.0f} MB/s")
print(f"acknowledgement of a one-line connection: {latency}")
mean = float(sync_s) / syncs * 1e3 if syncs else 0
print(f"WAL: {syncs:.0f} group commits, mean {mean:.2f} ms, max {sync_max} ms; "
      f"checkpoints: {ckpt}, last {ckpt_ms} ms")
print(f"peak RSS {int(rss_kb)/1024:.0f} MiB; SIGTERM to exit {float(s1)-float(s0):.2f} s")
PY
