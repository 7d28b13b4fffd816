#!/usr/bin/env bash
# Builds one statically linked `laminar` (glibc, libstdc++, RocksDB,
# liburing all inside), for hosts that should get a single file:
#   scripts/build-static.sh        -> target/static/laminar
#
# It links with `-C target-feature=+crt-static` on the gnu target, so it
# needs the static archives of glibc (libc6-dev) and libstdc++ (from
# g++); it uses its own target directory (`$CARGO_TARGET_DIR/../target-
# static`: other RUSTFLAGS would rebuild everything the normal build
# shares), so the first run compiles RocksDB once more (about 22 minutes
# on 2 cores). The binary is checked: no dynamic section, and it runs.
#
# Name resolution: a static glibc cannot load NSS modules, so host names
# in `laminar ingest --addr` resolve through /etc/hosts only; IP
# addresses always work (the server itself never resolves names).
LAMINAR_APT_PACKAGES="libc6-dev file"
source "$(dirname "$0")/env.sh"

static_dir="$(dirname "$CARGO_TARGET_DIR")/target-static"
host="$(rustc -vV | sed -n 's/^host: //p')"
echo "== building a static laminar for $host in $static_dir" >&2
CARGO_TARGET_DIR="$static_dir" \
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p laminar --target "$host"

built="$static_dir/$host/release/laminar"
mkdir -p target/static
out=target/static/laminar
# The line tables stay in the build directory's copy; the shipped one
# keeps its symbols (for perf and backtraces) and sheds the debug info.
strip --strip-debug -o "$out" "$built"

# Static: no program interpreter, no dynamic section.
if readelf -l "$out" | grep -q INTERP || readelf -d "$out" 2>/dev/null | grep -q NEEDED; then
    echo "error: $out is dynamically linked:" >&2
    readelf -d "$out" | grep NEEDED >&2 || true
    exit 1
fi
# It runs: a durable pipeline (glommio shards, the RocksDB checkpoint
# store) to its end in a scratch directory.
"$out" --version
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cat > "$scratch/q.sql" <<'SQL'
CREATE SOURCE bid WITH (connector = 'nexmark', events = '300000');
CREATE STREAM n AS SELECT auction, COUNT(*) AS bids FROM bid GROUP BY auction;
CREATE SINK n_out FROM n WITH (connector = 'file', path = 'n.csv', format = 'csv');
SQL
(cd "$scratch" && "$OLDPWD/$out" run -q --shards 2 --state-dir state --checkpoint-interval-ms 1 q.sql)
[ -s "$scratch/n.csv" ] && [ -f "$scratch/state/MANIFEST" ] || { echo "error: the static binary's run wrote no output or checkpoint" >&2; exit 1; }
echo "static binary: $out ($(du -h "$out" | cut -f1)); $(file -b "$out" | cut -d, -f1-2); ran a durable pipeline" >&2
