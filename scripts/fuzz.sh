#!/usr/bin/env bash
# Fuzzes laminar's decoders with cargo-fuzz (libFuzzer): the SQL front end,
# the CSV and JSON-lines record decoders, timestamp/interval parsing, the
# WAL and manifest readers, TCP line framing and the serve config.
# The target bodies are in tests/src/fuzz.rs.
#
#   scripts/fuzz.sh [--scratch] [SECONDS] [TARGET...]   (default: 600 s each, every target)
#
# Each target runs SECONDS on its corpus (tests/fuzz/corpus/TARGET, which
# the run grows: commit what it adds, after `cargo fuzz cmin`). With
# --scratch (what scripts/test.sh uses) the corpus is only read and new
# inputs go to a temporary directory, so the checkout stays clean. An input that crashes a target is
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
failed=0
for t in "${targets[@]}"; do
    mkdir -p "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t"
    log="$(mktemp /tmp/laminar-fuzz-$t.XXXXXX)"
    corpora=("tests/fuzz/corpus/$t")
    if [ -n "$scratch" ]; then
        corpora=("$(mktemp -d /tmp/laminar-fuzz-corpus-$t.XXXXXX)" "tests/fuzz/corpus/$t")
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
        echo "fuzz $t: ${runs:-no summary}, 0 crashes ($(ls "tests/fuzz/corpus/$t" | wc -l) committed corpus inputs)"
        rm -f "$log"
        [ -z "$scratch" ] || rm -rf "${corpora[0]}"
    fi
done
exit "$failed"
