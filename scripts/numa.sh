#!/usr/bin/env bash
# NUMA-aware placement for `laminar serve`: reads the machine's topology
# from /sys, picks the shard cores, and writes what the service needs.
#
#   scripts/numa.sh [--node N | --all] [--nic IFACE] [--reserve K]
#                   [--shards N] [--smt] [--hugepages N]
#                   [--sys DIR] [--etc DIR] [--apply]
#
# Choice of cores:
# - one node: the NIC's (`--nic`, from /sys/class/net/IFACE/device/
#   numa_node), else `--node N`, else the node with the most cores; `--all`
#   spreads the shards over every node instead.
# - one logical CPU per physical core (hyperthread siblings share a core's
#   caches and ports; `--smt` uses them all), minus the first `--reserve`
#   cores for the kernel and the NIC's interrupts, at most `--shards`.
#
# Output (printed; with `--apply` also written under `--etc`, default /etc):
# - laminar/numa.env: LAMINAR_SERVE_ARGS="--shards N --cpus LIST", read by
#   systemd/laminar.service;
# - systemd/system/laminar.service.d/numa.conf: CPUAffinity= the chosen
#   cores, NUMAPolicy=bind and NUMAMask= the node (one node only), and
#   LimitMEMLOCK= what the shards lock (3 io_uring rings of 512 KiB each,
#   doubled for headroom);
# - with `--hugepages N` and `--apply`: N 2 MiB huge pages reserved on
#   the chosen node(s) (state arenas ask for transparent huge pages; a
#   reserve keeps them available on a long-running host).
#
# `--sys DIR` reads a topology tree laid out like /sys (the tests use fake
# two-node trees).
set -euo pipefail

sys=/sys
etc=/etc
node=""
all=0
nic=""
reserve=0
shards_max=""
smt=0
hugepages=0
apply=0

die() { echo "error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --sys) sys="${2:?--sys needs a directory}"; shift 2 ;;
        --etc) etc="${2:?--etc needs a directory}"; shift 2 ;;
        --node) node="${2:?--node needs a number}"; shift 2 ;;
        --all) all=1; shift ;;
        --nic) nic="${2:?--nic needs an interface name}"; shift 2 ;;
        --reserve) reserve="${2:?--reserve needs a number}"; shift 2 ;;
        --shards) shards_max="${2:?--shards needs a number}"; shift 2 ;;
        --smt) smt=1; shift ;;
        --hugepages) hugepages="${2:?--hugepages needs a number}"; shift 2 ;;
        --apply) apply=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
for n in "$reserve" "$hugepages" ${shards_max:+"$shards_max"} ${node:+"$node"}; do
    [[ "$n" =~ ^[0-9]+$ ]] || die "expected a non-negative integer, found '$n'"
done
[ -z "$node" ] || [ "$all" -eq 0 ] || die "--node and --all exclude each other"

# "0-3,8,10-11" -> "0 1 2 3 8 10 11"
expand() {
    local part a b out=()
    IFS=',' read -ra parts <<< "$1"
    for part in "${parts[@]}"; do
        part="${part//[[:space:]]/}"
        [ -n "$part" ] || continue
        if [[ "$part" == *-* ]]; then
            a="${part%-*}"; b="${part#*-}"
            [[ "$a" =~ ^[0-9]+$ && "$b" =~ ^[0-9]+$ && "$a" -le "$b" ]] || die "bad CPU list '$1' in $sys"
            for ((c = a; c <= b; c++)); do out+=("$c"); done
        else
            [[ "$part" =~ ^[0-9]+$ ]] || die "bad CPU list '$1' in $sys"
            out+=("$part")
        fi
    done
    echo "${out[*]}"
}

# The nodes and their CPUs (a kernel without NUMA: one node, every CPU).
declare -A node_cpus
nodes=()
for d in "$sys"/devices/system/node/node[0-9]*; do
    [ -d "$d" ] || continue
    n="${d##*/node}"
    list="$(cat "$d/cpulist" 2>/dev/null || true)"
    [ -n "$list" ] || continue   # a memory-only node
    node_cpus[$n]="$(expand "$list")"
    nodes+=("$n")
done
if [ "${#nodes[@]}" -eq 0 ]; then
    online="$(cat "$sys/devices/system/cpu/online" 2>/dev/null)" || die "no topology under $sys (no node*/cpulist, no cpu/online)"
    node_cpus[0]="$(expand "$online")"
    nodes=(0)
fi
mapfile -t nodes < <(printf '%s\n' "${nodes[@]}" | sort -n)

if [ -n "$nic" ]; then
    f="$sys/class/net/$nic/device/numa_node"
    [ -d "$sys/class/net/$nic" ] || die "no network interface $nic under $sys/class/net"
    nic_node="$(cat "$f" 2>/dev/null || echo -1)"
    if [ "$nic_node" -ge 0 ] 2>/dev/null && [ -n "${node_cpus[$nic_node]:-}" ]; then
        [ -z "$node" ] || [ "$node" = "$nic_node" ] || echo "warning: --node $node is not $nic's node $nic_node" >&2
        node="${node:-$nic_node}"
    else
        echo "note: $nic reports no NUMA node; choosing by core count" >&2
    fi
fi
if [ "$all" -eq 1 ]; then
    chosen_nodes=("${nodes[@]}")
else
    if [ -z "$node" ]; then
        best=-1
        for n in "${nodes[@]}"; do
            count=$(wc -w <<< "${node_cpus[$n]}")
            if [ "$count" -gt "$best" ]; then best=$count; node=$n; fi
        done
    fi
    [ -n "${node_cpus[$node]:-}" ] || die "node $node has no CPUs (nodes: ${nodes[*]})"
    chosen_nodes=("$node")
fi

# One logical CPU per physical core: a CPU whose sibling list starts with
# a smaller CPU is that core's second thread.
cpus=()
for n in "${chosen_nodes[@]}"; do
    for c in ${node_cpus[$n]}; do
        if [ "$smt" -eq 0 ]; then
            sib="$sys/devices/system/cpu/cpu$c/topology/thread_siblings_list"
            if [ -r "$sib" ]; then
                first="$(expand "$(cat "$sib")" | cut -d' ' -f1)"
                [ "$first" = "$c" ] || continue
            fi
        fi
        cpus+=("$c")
    done
done
if [ "$reserve" -gt 0 ]; then
    [ "$reserve" -lt "${#cpus[@]}" ] || die "--reserve $reserve leaves no core of ${#cpus[@]}"
    cpus=("${cpus[@]:$reserve}")
fi
if [ -n "$shards_max" ] && [ "$shards_max" -gt 0 ] && [ "$shards_max" -lt "${#cpus[@]}" ]; then
    cpus=("${cpus[@]:0:$shards_max}")
fi
shards=${#cpus[@]}
[ "$shards" -ge 1 ] || die "no core left for shards"
list="$(IFS=,; echo "${cpus[*]}")"
memlock_kib=$(( shards * 3 * 512 * 2 ))

env_text="# Written by scripts/numa.sh: shard placement for laminar serve.
LAMINAR_SERVE_ARGS=\"--shards $shards --cpus $list\""
dropin_text="# Written by scripts/numa.sh: keep laminar on its cores and its memory local.
[Service]
CPUAffinity=${cpus[*]}"
if [ "${#chosen_nodes[@]}" -eq 1 ]; then
    dropin_text+="
NUMAPolicy=bind
NUMAMask=${chosen_nodes[0]}"
fi
dropin_text+="
LimitMEMLOCK=${memlock_kib}K"

{
    echo "# topology ($sys):"
    for n in "${nodes[@]}"; do echo "#   node $n: cpus $(tr ' ' ',' <<< "${node_cpus[$n]}")"; done
    [ -z "$nic" ] || echo "#   $nic on node ${nic_node:-?}"
    echo "# chosen: node(s) ${chosen_nodes[*]}, $shards shards on cpus $list"
    echo "== $etc/laminar/numa.env"
    echo "$env_text"
    echo "== $etc/systemd/system/laminar.service.d/numa.conf"
    echo "$dropin_text"
}

if [ "$apply" -eq 1 ]; then
    mkdir -p "$etc/laminar" "$etc/systemd/system/laminar.service.d"
    echo "$env_text" > "$etc/laminar/numa.env"
    echo "$dropin_text" > "$etc/systemd/system/laminar.service.d/numa.conf"
    if [ "$hugepages" -gt 0 ]; then
        per_node=$(( (hugepages + ${#chosen_nodes[@]} - 1) / ${#chosen_nodes[@]} ))
        for n in "${chosen_nodes[@]}"; do
            f="$sys/devices/system/node/node$n/hugepages/hugepages-2048kB/nr_hugepages"
            if [ -w "$f" ]; then
                echo "$per_node" > "$f"
                echo "reserved $(cat "$f") huge pages of 2 MiB on node $n" >&2
            else
                echo "warning: cannot reserve huge pages on node $n ($f not writable)" >&2
            fi
        done
    fi
    if [ "$etc" = /etc ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
    echo "written: $etc/laminar/numa.env, $etc/systemd/system/laminar.service.d/numa.conf" >&2
fi
