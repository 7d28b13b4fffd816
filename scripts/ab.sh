#!/bin/bash
# usage: ab.sh SQL N BIN...   prints per-binary user+sys CPU seconds and wall, alternating
sql=$1; n=$2; shift 2
for i in $(seq $n); do for b in "$@"; do
  /usr/bin/time -f "$(basename $b) %e s wall %U u %S s" $b run -q $sql 2>&1 >/dev/null | tail -1
done; done | sort | awk '{w[$1]+=$2; c[$1]+=$5+$7; n[$1]++} END {for (k in w) printf "%s wall %.3f cpu %.3f (n=%d)\n", k, w[k]/n[k], c[k]/n[k], n[k]}'
