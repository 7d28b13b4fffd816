#!/usr/bin/env bash
# Fuzzes laminar's decoders with cargo-fuzz (libFuzzer): the SQL front end,
# the CSV and JSON-lines record decoders, timestamp/interval parsing, the
# WAL and manifest readers, TCP line framing and the serve config.
# The target bodies are in tests/src/fuzz.rs.
#
#   scripts/fuzz.sh [--scratch] [SECONDS] [TARGET...]   (default: 600 s each, every target)
#
# Each target runs SECONDS on its corpus. A target's minimised corpus is
# one archive, tests/fuzz/corpus/TARGET.tar.gz (thousands of small files
# kept as one), unpacked into a temporary directory for the run. Without
# --scratch the run grows it: the corpus is minimised (`cargo fuzz cmin`)
# and packed back into the archive, to commit. With --scratch (what
# scripts/test.sh uses) the archive is only read and new inputs go to a
# temporary directory, so the checkout stays clean. An input that crashes a target is
# copied to tests/fuzz/regressions/TARGET/ (commit it: the default test
# suite replays it forever) and the script fails. Runs without sanitizers
# (a sanitized build would rebuild RocksDB; the one unsafe block the
# targets reach, the CSV scanner's SSE2 loads in exec/src/format/csv.rs,
# reads 16 bytes at i only while i + 16 <= len) and with a 2 GiB memory
# and 10 s per-input limit, so a leak or a hang is a finding too.
# libFuzzer is C++: cargo-fuzz builds it with the system's C++ compiler.
LAMINAR_APT_PACKAGES="${LAMINAR_APT_PACKAGES:-} g++"
source "$(dirname "$0")/env.sh"

scratch=""
if [ "${1:-}" = "--scratch" ]; then
    scratch=1
    shift
fi
seconds="${1:-${LAMINAR_FUZZ_SECONDS:-600}}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(sql csv json scalars wal manifest tcp_framing config)

if ! command -v cargo-fuzz >/dev/null; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --version 0.13.2
fi
# cargo-fuzz passes a few -Z flags; this lets the stable compiler take them.
export RUSTC_BOOTSTRAP=1
fuzz_target_dir="${LAMINAR_FUZZ_TARGET_DIR:-$HOME/.cache/laminar/fuzz-target}"
# Packs a corpus directory into its archive, byte for byte the same for
# the same files (sorted names, no owners or times), so an unchanged
# corpus leaves the archive unchanged.
pack_corpus() {
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2026-01-01 00:00Z' -C "$1" -cf - . | gzip -n -9 >"$2"
}
failed=0
for t in "${targets[@]}"; do
    mkdir -p "tests/fuzz/regressions/$t"
    archive="tests/fuzz/corpus/$t.tar.gz"
    corpus="$(mktemp -d /tmp/laminar-fuzz-corpus-$t.XXXXXX)"
    [ ! -e "$archive" ] || tar -xzf "$archive" -C "$corpus"
    log="$(mktemp /tmp/laminar-fuzz-$t.XXXXXX)"
    # New inputs go to the first directory; the regressions come last, so
    # the overflow-checked fuzz build replays every one of them first.
    corpora=("$corpus" "tests/fuzz/regressions/$t")
    if [ -n "$scratch" ]; then
        corpora=("$(mktemp -d /tmp/laminar-fuzz-new-$t.XXXXXX)" "$corpus" "tests/fuzz/regressions/$t")
    fi
    set +e
    cargo fuzz run --fuzz-dir tests/fuzz --target-dir "$fuzz_target_dir" --sanitizer none "$t" \
        "${corpora[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 >"$log" 2>&1
    rc=$?
    set -e
    runs="$(grep -oE "Done [0-9]+ runs in [0-9]+ second" "$log" | tail -1 || true)"
    if [ "$rc" -ne 0 ]; then
        failed=1
        echo "fuzz $t: FAILED (log: $log)" >&2
        grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -5 >&2 || true
        for a in tests/fuzz/artifacts/"$t"/*; do
            [ -e "$a" ] && cp "$a" "tests/fuzz/regressions/$t/" && echo "  kept $a in tests/fuzz/regressions/$t/" >&2
        done
    else
        echo "fuzz $t: ${runs:-no summary}, 0 crashes ($(ls "$corpus" | wc -l) corpus inputs)"
        rm -f "$log"
        if [ -n "$scratch" ]; then
            rm -rf "${corpora[0]}"
        else
            # Minimised in place, then packed.
            cargo fuzz cmin --fuzz-dir tests/fuzz --target-dir "$fuzz_target_dir" --sanitizer none "$t" "$corpus" -- \
                -rss_limit_mb=2048 -timeout=10 -max_len=65536 >/dev/null 2>&1 || true
            pack_corpus "$corpus" "$archive"
            echo "  packed $(ls "$corpus" | wc -l) inputs into $archive (commit it)"
        fi
    fi
    rm -rf "$corpus"
done
exit "$failed"
