#!/usr/bin/env bash
# Measures SELECT over pgwire on `laminar serve`:
#   scripts/bench_pg.sh [GROUPS] [SHARDS]   (default 1000000 2)
#
# GROUPS auctions, two bids each, go through a tcp source into an
# unwindowed COUNT/SUM per auction; once the last checkpoint holds them
# all, a psycopg client times:
# - the first SELECT of the checkpoint (a point lookup): reading the
#   view from the checkpoint store, merging the shards' parts, building
#   the rows and the lookup's hash index;
# - 2,000 point lookups after it (`WHERE auction = k`, random k): the
#   cached view and its index, p50 / p99 / max;
# - a filter over every row returning a few, and an ORDER BY … LIMIT 10.
LAMINAR_APT_PACKAGES="python3 python3-psycopg"
source "$(dirname "$0")/env.sh"

groups="${1:-1000000}"
shards="${2:-2}"
cargo build --release --locked -p laminar >&2
bin="$LAMINAR_ROOT/target/release/laminar"
work="$(mktemp -d /tmp/laminar-bench-pg.XXXXXX)"
trap 'kill -9 "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

cat > pipeline.sql <<'SQL'
CREATE SOURCE bid (auction BIGINT NOT NULL, price BIGINT, ts BIGINT,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'tcp', port = '0', format = 'csv');
CREATE STREAM per_auction AS
SELECT auction, COUNT(*) AS bids, SUM(price) AS total FROM bid GROUP BY auction;
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
[sql]
result_rows_max = 100000000
[limits]
state_entries_max = 100000000
TOML
# Starts the server in the background ($pid) and waits for `ready`.
start_server() {
    : > serve.log
    LAMINAR_LOG=warn "$bin" serve --config laminar.toml >/dev/null 2>serve.log &
    pid=$!
    until grep -q '^ready' serve.log; do
        kill -0 "$pid" 2>/dev/null || { cat serve.log >&2; exit 1; }
        sleep 0.1
    done
}
awk -v n="$groups" 'BEGIN { srand(3); for (r = 0; r < 2; r++) for (i = 0; i < n; i++)
    printf "%d,%d,%d\n", i, int(rand() * 1000), 1704067200000 + r * n + i }' > in.csv

start_server
source_addr=$(awk '/^listening: source bid/ { print $NF }' serve.log)
sql_port=$(awk '/^listening: sql/ { print $NF }' serve.log | cut -d: -f2)
"$bin" ingest --addr "$source_addr" in.csv >&2

/usr/bin/python3 - "$sql_port" "$groups" <<'PY'
import random, sys, time
import psycopg

port, groups = int(sys.argv[1]), int(sys.argv[2])
conn = psycopg.connect(host="127.0.0.1", port=port, user="laminar", dbname="laminar",
                       sslmode="disable", autocommit=True)
# The last checkpoint holds every bid once the last auction shows two.
# Each poll reads a new checkpoint's view, so poll no faster than they come.
deadline = time.time() + 600
while True:
    try:
        row = conn.execute(f"SELECT bids FROM per_auction WHERE auction = {groups - 1}").fetchone()
    except psycopg.errors.ObjectNotInPrerequisiteState:
        row = None  # no checkpoint yet
    if row and int(row[0]) == 2:
        break
    assert time.time() < deadline, "the view never held every bid"
    time.sleep(1.0)
cp = conn.execute("SHOW CHECKPOINTS").fetchone()
# The last poll read this checkpoint's view: what follows is cached (a
# cold read is timed after a restart, below).
lat = []
for _ in range(2000):
    k = random.randrange(groups)
    t = time.perf_counter()
    row = conn.execute(f"SELECT bids, total FROM per_auction WHERE auction = {k}").fetchone()
    lat.append((time.perf_counter() - t) * 1e6)
    assert row is not None and int(row[0]) == 2
lat.sort()
t = time.perf_counter()
few = conn.execute("SELECT auction FROM per_auction WHERE total > 1990").fetchall()
scan_ms = (time.perf_counter() - t) * 1e3
t = time.perf_counter()
top = conn.execute("SELECT auction, total FROM per_auction ORDER BY total DESC, auction LIMIT 10").fetchall()
top_ms = (time.perf_counter() - t) * 1e3
print(f"checkpoint {cp[0]}: {int(cp[3]) / 1e6:.0f} MB of state, {groups} groups")
print(f"point lookup, cached view: p50 {lat[len(lat) // 2]:.0f} us, p99 {lat[int(len(lat) * 0.99)]:.0f} us, max {lat[-1]:.0f} us (2000 lookups)")
print(f"filter over every row ({len(few)} returned): {scan_ms:.0f} ms; ORDER BY total DESC LIMIT 10: {top_ms:.0f} ms")
PY

# A cold read: the first SELECT after a restart reads the checkpoint the
# stop left (the same path as the first SELECT of any new checkpoint).
kill -TERM "$pid"; wait "$pid" || true
start_server
sql_port=$(awk '/^listening: sql/ { print $NF }' serve.log | cut -d: -f2)
/usr/bin/python3 - "$sql_port" <<'PY'
import sys, time
import psycopg
conn = psycopg.connect(host="127.0.0.1", port=int(sys.argv[1]), user="laminar", dbname="laminar",
                       sslmode="disable", autocommit=True)
epoch = lambda: conn.execute("SHOW CHECKPOINTS").fetchone()[0]
# A restart takes a checkpoint or two after recovery: wait until none
# has come for 3 s, so both reads below see the same one.
e0, since = epoch(), time.time()
while time.time() - since < 3:
    time.sleep(0.2)
    if epoch() != e0:
        e0, since = epoch(), time.time()
t = time.perf_counter()
conn.execute("SELECT bids FROM per_auction WHERE auction = 17").fetchone()
cold = (time.perf_counter() - t) * 1e3
e1 = epoch()
t = time.perf_counter()
conn.execute("SELECT bids FROM per_auction WHERE auction = 18").fetchone()
warm = (time.perf_counter() - t) * 1e6
e2 = epoch()
print(f"first SELECT of a checkpoint (reads the view from the store): {cold:.0f} ms (checkpoint {e0}, then {e1})")
print(f"the next one: {warm:.0f} us (checkpoint {e2})")
PY
kill -TERM "$pid"; wait "$pid" || true
