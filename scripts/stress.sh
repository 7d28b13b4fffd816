#!/usr/bin/env bash
# The multi-shard stress loop: runs every test binary that starts shards
# (golden, differential, join_differential, topn_differential, allocations,
# the reactor's unit tests, the crash tests, serve's end-to-end and
# overload tests) N
# times (default 50) on 1, 2 and 4 shards, each
# under a 120 s timeout. A timeout is a hang: its output (with the stall
# report naming every shard's phase and every channel's state) is kept
# under $LAMINAR_STRESS_LOGS.
#
#   scripts/stress.sh [N]            or   LAMINAR_STRESS=N scripts/test.sh
# (python3 reads cargo's list of test binaries.)
LAMINAR_APT_PACKAGES="${LAMINAR_APT_PACKAGES:-} python3"
source "$(dirname "$0")/env.sh"

iterations="${1:-${LAMINAR_STRESS:-50}}"
logs="${LAMINAR_STRESS_LOGS:-$(mktemp -d /tmp/laminar-stress.XXXXXX)}"
mkdir -p "$logs"

# Build once and take the test binaries' paths from cargo.
mapfile -t binaries < <(cargo test --release --workspace --locked --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        name = m["target"]["name"]
        if name in ("golden", "differential", "join_differential", "topn_differential", "allocations", "laminar_reactor", "durability", "serve", "overload"):
            print(m["executable"] + " " + m["manifest_path"].rsplit("/", 1)[0])
')
[ "${#binaries[@]}" -eq 8 ] || { echo "error: expected 8 test binaries, found ${#binaries[@]}" >&2; exit 1; }

export LAMINAR_TEST_SHARDS=1,2,4
hangs=0
failures=0
for i in $(seq 1 "$iterations"); do
    for entry in "${binaries[@]}"; do
        exe="${entry% *}"
        dir="${entry#* }"
        name="$(basename "$exe")"
        set +e
        (cd "$dir" && timeout 120 "$exe" -q >"$logs/last.log" 2>&1)
        rc=$?
        set -e
        if [ "$rc" -eq 124 ]; then
            hangs=$((hangs + 1))
            cp "$logs/last.log" "$logs/hang.$i.$name.log"
            echo "iteration $i: $name hung (log: $logs/hang.$i.$name.log)"
        elif [ "$rc" -ne 0 ]; then
            failures=$((failures + 1))
            cp "$logs/last.log" "$logs/fail.$i.$name.log"
            echo "iteration $i: $name failed (log: $logs/fail.$i.$name.log)"
        fi
    done
    echo "iteration $i of $iterations: $hangs hangs, $failures failures"
done
[ "$hangs" -eq 0 ] && [ "$failures" -eq 0 ]
