#!/usr/bin/env bash
# A/B timing of laminar builds on one SQL file, for a shared and noisy
# machine: the binaries run in alternation, N rounds, so a slow spell of
# the host hits all of them alike; prints each binary's mean wall and CPU
# (user + system) seconds. Compare figures of one invocation only.
#
#   scripts/ab.sh SQL N BIN [BIN...]
#   scripts/ab.sh /tmp/peers/work/sql/q2_10000000.sql 5 /tmp/laminar.before target/release/laminar
#
# Copy a build aside (cp target/release/laminar /tmp/laminar.before) before
# changing the code; give the copies distinct names, the report is by name.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 SQL N BIN [BIN...]" >&2
    exit 2
fi
sql=$1
n=$2
shift 2
for bin in "$@"; do
    [ -x "$bin" ] || { echo "$0: $bin is not an executable" >&2; exit 2; }
done
for _ in $(seq "$n"); do
    for bin in "$@"; do
        /usr/bin/time -f "$(basename "$bin") %e %U %S" "$bin" run -q "$sql" 2>&1 >/dev/null | tail -1
    done
done | awk '{ wall[$1] += $2; cpu[$1] += $3 + $4; runs[$1]++ }
    END { for (b in wall) printf "%s wall %.3f s cpu %.3f s (n=%d)\n", b, wall[b] / runs[b], cpu[b] / runs[b], runs[b] }'
