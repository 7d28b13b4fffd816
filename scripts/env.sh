# Shared set-up for laminar's scripts: sourced, not run.
#
# - One cargo profile (release) for tests, the demo and benchmarks, and one
#   persistent target directory per machine, so heavy dependencies are
#   built once and every fresh clone on this machine reuses them.
# - `target` in the checkout links to that directory, so
#   `target/release/laminar` works as usual.
# - System packages the build needs are installed here (as root) when
#   missing.

set -euo pipefail

LAMINAR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/laminar/target}"
mkdir -p "$CARGO_TARGET_DIR"
if [ ! -e "$LAMINAR_ROOT/target" ]; then
    ln -s "$CARGO_TARGET_DIR" "$LAMINAR_ROOT/target"
fi

# Debian packages the build needs (none yet beyond the toolchain; the
# RocksDB checkpoint store will add clang and libclang-dev).
LAMINAR_APT_PACKAGES="${LAMINAR_APT_PACKAGES:-}"

ensure_apt_packages() {
    local missing=()
    for p in $LAMINAR_APT_PACKAGES; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing: ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
    fi
}

ensure_toolchain() {
    command -v cargo >/dev/null || { echo "error: cargo not found; install Rust with rustup first" >&2; exit 1; }
    cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
    cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}

# glommio locks memory for its io_uring rings: 3 rings of 512 KiB per
# shard (`ShardConfig::io_memory_bytes`), one shard per core by default.
# Root (or CAP_IPC_LOCK) needs nothing; otherwise raise the soft limit as
# far as the hard one allows, and say so when that is not enough.
ensure_memlock() {
    [ "$(id -u)" -eq 0 ] && return 0
    local need_kib=$(( $(nproc) * 3 * 512 ))
    local soft
    soft="$(ulimit -l)"
    [ "$soft" = "unlimited" ] && return 0
    if [ "$soft" -lt "$need_kib" ]; then
        ulimit -l "$need_kib" 2>/dev/null || ulimit -l "$(ulimit -H -l)" 2>/dev/null || true
        soft="$(ulimit -l)"
        if [ "$soft" != "unlimited" ] && [ "$soft" -lt "$need_kib" ]; then
            echo "warning: locked-memory limit ${soft} KiB is below the ${need_kib} KiB that $(nproc) shards lock;" \
                 "run as root, grant CAP_IPC_LOCK, raise 'ulimit -l', or pass --shards N with N*1536 KiB under it" >&2
        fi
    fi
}

ensure_apt_packages
ensure_toolchain
ensure_memlock
cd "$LAMINAR_ROOT"
