#!/usr/bin/env bash
# Issue 39: RKD and CoDet in the papers' regime, with shapes-clip-v2's text (ViLD-text names
# almost no novel shape, the v2 teacher names most of them). A v2 ViLD-text init, then both
# reproductions from it, every row. Usage: scripts/v2_regime.sh [DATA] [OUT]
set -euo pipefail
data=${1:-data/shapes}
out=${2:-runs}
ovdet=${OVDET:-ovdet}
[ -f "$data/categories.json" ] || $ovdet shapes generate --out "$data"
$ovdet shapes reproduce-vild --data "$data" --out "$out/shapes-vild-v2" --clip shapes-clip-v2 \
    --steps 1200 --distill-proposals 24 --rows ViLD-text
$ovdet shapes reproduce-rkd --data "$data" --out "$out/shapes-rkd-v2" --clip shapes-clip-v2 \
    --init "$out/shapes-vild-v2/ViLD-text"
$ovdet shapes reproduce-codet --data "$data" --out "$out/shapes-codet-v2" --clip shapes-clip-v2 \
    --init "$out/shapes-vild-v2/ViLD-text"
