#!/usr/bin/env bash
# Builds laminar and runs the demo pipeline: one million Nexmark events
# from the built-in generator through a windowed SQL pipeline. Per-window
# summaries print to stdout; the hot auctions go to out/hot_auctions.csv.
# Pass another SQL file to run that instead.
source "$(dirname "$0")/env.sh"

cargo build --release --locked -p laminar
sql="${1:-scripts/demo/nexmark.sql}"
echo "== laminar run $sql" >&2
"$CARGO_TARGET_DIR/release/laminar" run "$sql"
if [ -f out/hot_auctions.csv ]; then
    echo "== out/hot_auctions.csv (first 10 lines)" >&2
    head -n 10 out/hot_auctions.csv
fi
